"""The grpc-js peers in tests/interop/node/, run as subprocesses on ephemeral ports.

``make test`` installs them (``npm ci`` from the committed lockfile). Locally, a machine
without Node skips the grpc-js directions with a message saying so; in CI (``CI=true``)
a missing Node or missing packages fail instead, so the matrix can never silently shrink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.child_processes import child, read_line

NODE_DIR = Path(__file__).resolve().parent / "node"
START_TIMEOUT = 30.0
RUN_TIMEOUT = 120.0


def in_ci() -> bool:
    """True when the environment says this is a CI run (``CI=true``, as CI services set)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def node_executable() -> str:
    """The ``node`` binary with grpc-js installed beside the peers; skip or fail if absent."""
    node = shutil.which("node")
    if node is None:
        problem = "Node.js (`node`) is not installed"
    elif not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        problem = "grpc-js is not installed in tests/interop/node (`make node-deps` runs npm ci)"
    else:
        return node
    if in_ci():
        pytest.fail(f"{problem}: CI must run the grpc-js interop matrix")
    pytest.skip(f"{problem}; skipping the grpc-js interop directions (`make test` installs it)")


@contextlib.asynccontextmanager
async def node_server() -> AsyncIterator[str]:
    """Run the grpc-js TestService server on a free port; yield its target."""
    server = child(node_executable(), str(NODE_DIR / "server.js"), "0", cwd=NODE_DIR, stderr=None)
    async with server as process:
        line = await read_line(process, START_TIMEOUT)
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"the grpc-js server did not start: {line!r}")
        yield f"127.0.0.1:{int(line.split()[1])}"
        process.terminate()
        with contextlib.suppress(TimeoutError):  # then it is killed
            async with asyncio.timeout(START_TIMEOUT):
                await process.wait()


async def run_node_client(target: str) -> dict[str, str | None]:
    """Run every interop case with the grpc-js client; None for a pass, else the failure."""
    client = child(
        node_executable(),
        str(NODE_DIR / "client.js"),
        target,
        cwd=NODE_DIR,
        stderr=asyncio.subprocess.PIPE,
    )
    async with client as process:
        async with asyncio.timeout(RUN_TIMEOUT):
            output, errors = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the grpc-js client exited {process.returncode}: {errors.decode()}")
    results: dict[str, str | None] = {}
    for line in output.decode().splitlines():
        outcome = json.loads(line)
        results[outcome["case"]] = None if outcome["ok"] else outcome["error"]
    return results
