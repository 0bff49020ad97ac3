"""A real redis-server for the tests: ephemeral port, its own directory, stopped after.

The tests never use the default port 6379 and never skip in CI (``CI`` set): a missing
``redis-server`` there is a failure (``make test`` installs it: see the Makefile).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT, WAIT

READY = "Ready to accept connections"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the caller retries if it is taken meanwhile)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """The redis-server path; fails in CI, skips elsewhere, if it is not installed."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (make test installs the Debian package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class ChildProcess:
    """A child process this module started; stopped by a signal, waited for within a bound."""

    stop_timeout = WAIT

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def _signal(self, signum: int) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signum)
            await asyncio.wait_for(process.wait(), self.stop_timeout)


class RedisServer(ChildProcess):
    """One redis-server process with AOF persistence in ``directory``; restartable."""

    def __init__(self, directory: Path, *, appendonly: bool = True, fsync: str = "always") -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.appendonly = appendonly
        self.fsync = fsync
        self.port = 0
        super().__init__()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (on the same port and directory after the first time); wait until ready."""
        for _ in range(5):
            port = self.port or free_port()
            self._process = await asyncio.create_subprocess_exec(
                self.binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.fsync,
                "--save", "",
                "--protected-mode", "no",
                "--enable-debug-command", "yes",
                "--daemonize", "no",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            if await self._ready():
                self.port = port
                return
            await self.kill()
        raise RuntimeError("redis-server did not start (port taken 5 times?)")

    async def _ready(self) -> bool:
        assert self._process is not None
        assert self._process.stdout is not None
        stdout = self._process.stdout

        async def find() -> bool:
            while True:
                line = await stdout.readline()
                if not line:
                    return False
                if READY in line.decode(errors="replace"):
                    return True

        ready = await asyncio.wait_for(find(), WAIT)
        if ready:
            # Keep reading its log so the pipe never fills and blocks the server.
            asyncio.get_running_loop().create_task(_drain(stdout))
        return ready

    async def kill(self) -> None:
        """SIGKILL: no shutdown, the AOF is what was written (fsync always: every write)."""
        await self._signal(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly."""
        await self._signal(signal.SIGTERM)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


@contextlib.asynccontextmanager
async def redis_server(*, appendonly: bool = True) -> AsyncIterator[RedisServer]:
    """A started RedisServer in a fresh temporary directory, killed and removed after."""
    with tempfile.TemporaryDirectory(prefix="grpcstream-redis-") as directory:
        server = RedisServer(Path(directory), appendonly=appendonly)
        await server.start()
        try:
            yield server
        finally:
            await server.kill()


class Replica(ChildProcess):
    """``tests.support.redis_replica`` in a child process on ``host``: restartable, killable."""

    stop_timeout = WAIT * 2  # a SIGTERM drains its streams first

    def __init__(self, host: str, redis_url: str, stream: str, *args: str) -> None:
        self.host = host
        self.port = 0
        self.redis_url = redis_url
        self.stream = stream
        self.args = args
        super().__init__()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> str:
        """Start (again on the same port) and return the target once it serves."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m", "tests.support.redis_replica",
            "--host", self.host,
            "--port", str(self.port),
            "--redis", self.redis_url,
            "--stream", self.stream,
            *self.args,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), WAIT * 3)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"replica on {self.host} did not start: {line!r}")
        self.port = int(line.split()[1])
        return self.target

    async def terminate(self) -> None:
        """SIGTERM (a deploy): it drains, then exits."""
        await self._signal(signal.SIGTERM)

    async def kill(self) -> None:
        """SIGKILL: gone at once."""
        await self._signal(signal.SIGKILL)


@contextlib.asynccontextmanager
async def replicas(
    redis_url: str,
    stream: str,
    *args: str,
    hosts: tuple[str, ...] = ("127.0.0.1", "127.0.0.2", "127.0.0.3"),
) -> AsyncIterator[list[Replica]]:
    """Replica processes on ``hosts`` (all loopback), started together, killed after."""
    started = [Replica(host, redis_url, stream, *args) for host in hosts]
    try:
        await asyncio.gather(*(replica.start() for replica in started))
        yield started
    finally:
        await asyncio.gather(*(replica.kill() for replica in started))
