"""``make demo``: the log server, the live dashboard, and a server restart in the middle.

Run: ``python -m examples.logs.demo`` (about 15 s; ``--seconds`` changes that). It starts
the log server as a subprocess on a free port, shows the dashboard, restarts the server
halfway through (SIGTERM, wait for exit code 0, start it again on the same port) so the
dashboard's reconnect and resume are visible, then shuts everything down and prints a
summary such as ``received 300 entries, 0 gaps, 0 duplicates, 1 reconnect``. It exits 0
when nothing was lost or repeated and the dashboard reconnected.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from pathlib import Path

from grpcstream_demo.logs_pb2 import LogRequest

from .dashboard import Stats, run_dashboard
from .firehose import measure, report

ROOT = Path(__file__).resolve().parents[2]  # the directory that holds ``examples/``
READY = re.compile(rb"listening on ([\w.\[\]:]+):(\d+)")
STARTUP_TIMEOUT = 30.0  # generous: importing grpc on a busy CI machine can take seconds
EXIT_TIMEOUT = 15.0
RECONNECT_TIMEOUT = 30.0


class LogServerProcess:
    """The log server running as a child process.

    Args:
        port: the port to listen on; 0 picks a free one (see ``port`` after ``start()``).
        rate: synthetic entries per second.
    """

    def __init__(self, port: int, rate: float) -> None:
        self.port = port
        self._rate = rate
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the server and wait until it accepts calls."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "examples.logs.server",
            f"--port={self.port}",
            f"--rate={self._rate}",
            "--grace=5",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT):
            line = await self._process.stdout.readline()
        ready = READY.search(line)
        if ready is None:
            await self.kill()
            raise RuntimeError(f"the log server did not start: {line!r}")
        self.port = int(ready.group(2))

    async def stop(self) -> int:
        """SIGTERM the server (it drains its streams) and return its exit code."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(EXIT_TIMEOUT):
            return await self._process.wait()

    async def kill(self) -> None:
        """Kill the server if it is still running (cleanup after a failure)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


async def wait_until(deadline: float, event: asyncio.Event | None = None) -> None:
    """Wait for ``event`` (bounded by ``RECONNECT_TIMEOUT``), then until ``deadline``."""
    if event is not None:
        async with asyncio.timeout(RECONNECT_TIMEOUT):
            await event.wait()
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def main(seconds: float, rate: float, plain: bool) -> int:
    """Run the demo; return the process exit code."""
    live = sys.stdout.isatty() and not plain
    server = LogServerProcess(0, rate)
    await server.start()
    print(f"log server listening on 127.0.0.1:{server.port}", flush=True)
    stats = Stats()
    stop = asyncio.Event()
    exit_codes: list[int] = []
    start = time.monotonic()
    try:
        dashboard = asyncio.create_task(
            run_dashboard(
                f"127.0.0.1:{server.port}",
                LogRequest(follow=True),
                stats,
                stop,
                live=live,
            )
        )
        await wait_until(start + seconds / 2, stats.receiving)
        print(f"-- restarting the log server on port {server.port}", flush=True)
        exit_codes.append(await server.stop())
        await server.start()
        await wait_until(start + seconds, stats.reconnected)
        stop.set()
        async with asyncio.timeout(EXIT_TIMEOUT):
            await dashboard
        exit_codes.append(await server.stop())
    finally:
        stop.set()
        await server.kill()
    print(f"server exit codes: {', '.join(map(str, exit_codes))}")
    print(stats.summary(), flush=True)
    ok = stats.gaps == stats.duplicates == 0 and stats.reconnects >= 1 and stats.received > 0
    return 0 if ok and exit_codes == [0, 0] else 1


async def firehose_main(seconds: float) -> int:
    """``--firehose``: entries/s of one stream, per message and batched."""
    server = LogServerProcess(0, 1.0)
    await server.start()
    try:
        per_message, batched = await measure(f"127.0.0.1:{server.port}", seconds)
    finally:
        await server.kill()
    print(report(per_message, batched), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the demo runs")
    parser.add_argument("--rate", type=float, default=25.0, help="log entries per second")
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    parser.add_argument(
        "--firehose",
        action="store_true",
        help="measure entries/s of one stream, per message and batched (--seconds each)",
    )
    args = parser.parse_args()
    if args.firehose:
        raise SystemExit(asyncio.run(firehose_main(args.seconds)))
    raise SystemExit(asyncio.run(main(args.seconds, args.rate, args.plain)))
