"""Child processes for the tests that run examples, benchmarks or peers as real programs.

``child()`` starts one with its stdout piped and never leaves it behind; ``run_module()``
runs ``python -m module`` to the end; ``example_server()`` starts an example server on a
free port and stops it with SIGTERM, as a deploy would.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.servers import REPO_ROOT

START_TIMEOUT = 30.0
"""Importing grpc (and the OpenTelemetry SDK) in a fresh interpreter on a busy machine."""
RUN_TIMEOUT = 40.0
LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")
"""What an example server prints first: its target."""


@contextlib.asynccontextmanager
async def child(
    *command: str, cwd: Path = REPO_ROOT, stderr: int | None = asyncio.subprocess.STDOUT
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``command`` with stdout piped (stderr into it unless told); killed at the end
    if it is still running."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=stderr
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_line(process: asyncio.subprocess.Process, timeout: float = START_TIMEOUT) -> str:
    """The child's next line of output (empty once it has exited)."""
    assert process.stdout is not None
    async with asyncio.timeout(timeout):
        return (await process.stdout.readline()).decode()


async def run_module(module: str, *args: str, timeout: float = RUN_TIMEOUT) -> tuple[int, str]:
    """Run ``python -m module args``; return its exit code and its output."""
    async with child(sys.executable, "-m", module, *args) as process:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


@contextlib.asynccontextmanager
async def example_server(
    module: str, *args: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """Run an example server on a free port; yield its target and process; SIGTERM it at the
    end and expect exit 0 (a clean drain)."""
    async with child(sys.executable, "-m", module, "--port=0", *args, stderr=None) as process:
        line = await read_line(process)
        ready = LISTENING.search(line)
        assert ready, f"{module} did not start: {line!r}"
        yield ready.group(1), process
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(RUN_TIMEOUT):
            assert await process.wait() == 0
