"""Starting and talking to the benchmark's server and client processes (runner side).

Every read from a child has a timeout, and every child is killed on the way out, so a
hung process can never hang ``make bench``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from .common import Impl, LoopKind

__all__ = ["BenchClient", "BenchProcessError", "BenchServer", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent


class BenchProcessError(RuntimeError):
    """A benchmark child process failed, timed out or answered nonsense."""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT), env.get("PYTHONPATH", "")) if part
    )
    # gRPC logs every GOAWAY at INFO on stderr; keep the children's stderr for real errors.
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Child:
    """A child process with a line protocol on stdin/stdout and stderr kept in a file."""

    def __init__(self, args: list[str], name: str) -> None:
        self.name = name
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            env=_child_env(),
        )
        assert self._proc.stdout is not None
        self._stdout_fd = self._proc.stdout.fileno()
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def send_line(self, text: str) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(text.encode() + b"\n")
            stdin.flush()
        except BrokenPipeError as exc:
            raise BenchProcessError(f"{self.name} exited:\n{self.stderr_tail()}") from exc

    def read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._stdout_fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchProcessError(f"{self.name} did not answer within {timeout:.0f} s")
                if not selector.select(remaining):
                    continue
                chunk = os.read(self._stdout_fd, 65536)
                if not chunk:
                    raise BenchProcessError(
                        f"{self.name} exited (code {self._proc.poll()}):\n{self.stderr_tail()}"
                    )
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def close(self, timeout: float = 10.0) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


class BenchServer:
    """A server process (``benchmarks.server``); ``port`` is known once started."""

    def __init__(self, impl: Impl, loop: LoopKind, *, startup_timeout: float = 30.0) -> None:
        self.impl = impl
        self._child = _Child(
            ["-m", "benchmarks.server", "--impl", impl, "--loop", loop], f"{impl} server"
        )
        try:
            line = self._child.read_line(startup_timeout)
            word, _, port = line.partition(" ")
            if word != "PORT":
                raise BenchProcessError(f"{impl} server printed {line!r}, not PORT <n>")
            self.port = int(port)
        except BaseException:
            self._child.close()
            raise

    @property
    def pid(self) -> int:
        return self._child.pid

    def close(self) -> None:
        self._child.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BenchClient:
    """A client process (``benchmarks.client``) connected to one server."""

    def __init__(
        self, impl: Impl, loop: LoopKind, server: BenchServer, *, startup_timeout: float = 30.0
    ) -> None:
        self.impl = impl
        args = ["-m", "benchmarks.client", "--impl", impl, "--loop", loop]
        args += ["--port", str(server.port), "--server-pid", str(server.pid)]
        self._child = _Child(args, f"{impl} client")
        try:
            ready = json.loads(self._child.read_line(startup_timeout))
            if not ready.get("ready"):
                raise BenchProcessError(f"{impl} client did not get ready: {ready!r}")
        except BaseException:
            self._child.close()
            raise

    def request(self, command: dict[str, object], timeout: float) -> dict[str, object]:
        """Send one command and return the parsed answer (raises if the run failed)."""
        self._child.send_line(json.dumps(command))
        answer: dict[str, object] = json.loads(self._child.read_line(timeout))
        if not answer.get("ok"):
            raise BenchProcessError(
                f"{self._child.name} failed {command!r}: {answer.get('traceback')}"
            )
        return answer

    def close(self) -> None:
        self._child.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
