"""``make demo``: one log server, three dashboard viewers on its Broadcast.

Run: ``python -m examples.logs.demo`` (about 12 s; ``--seconds`` changes that). It starts
the log server as a subprocess on a free port. Its entries go into one
``grpcstream.Broadcast``, and three viewers follow it:

- **late**: opens a third of the way in and first shows the last ``--last`` lines (the
  dashboard's first screen), then live ones;
- **slow**: reads only ``--slow-rate`` entries a second, with ``max_lag``: the server
  skips it ahead (``drop_oldest``) instead of holding anyone back, and it counts what it
  lost;
- **reconnecting**: watches through a TCP proxy whose connections are cut halfway
  through; its ``RetryPolicy`` reconnects and ``resume=`` continues after the last entry
  it has, with no gap and no duplicate.

At the end each prints its gap and duplicate counts. The demo exits 0 when the late and
reconnecting viewers saw no gap and no duplicate, the reconnecting one reconnected, the
slow one lost entries but saw no duplicate, and the server exited 0 after its drain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest

from .dashboard import Stats, plain_line, resuming_stream
from .firehose import measure, report
from .proxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]  # the directory that holds ``examples/``
READY = re.compile(rb"listening on ([\w.\[\]:]+):(\d+)")
STARTUP_TIMEOUT = 30.0  # generous: importing grpc on a busy CI machine can take seconds
EXIT_TIMEOUT = 15.0
RECONNECT_TIMEOUT = 30.0
# The slow viewer's window stays small (no BDP probing, 8 KiB lookahead), so that falling
# behind shows on the server within seconds instead of after megabytes of buffering.
SLOW_CHANNEL_OPTIONS = (
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 8192),
)


class LogServerProcess:
    """The log server running as a child process.

    Args:
        port: the port to listen on; 0 picks a free one (see ``port`` after ``start()``).
        rate: synthetic entries per second.
        log_entries: how many entries its broadcast log keeps.
    """

    def __init__(self, port: int, rate: float, log_entries: int) -> None:
        self.port = port
        self._rate = rate
        self._log_entries = log_entries
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the server and wait until it accepts calls."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "examples.logs.server",
            f"--port={self.port}",
            f"--rate={self._rate}",
            f"--log-entries={self._log_entries}",
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


async def watch(
    target: str,
    request: LogRequest,
    stats: Stats,
    stop: asyncio.Event,
    *,
    options: tuple[tuple[str, int], ...] = (),
    on_entry: Callable[[LogEntry], Awaitable[None]] | None = None,
) -> None:
    """Follow ``target`` with ``request`` until ``stop`` is set, counting into ``stats``."""

    def on_reconnect(last_seq: int) -> None:
        stats.reconnects += 1
        stats.reconnected.set()
        print(f"-- reconnected, resumed after seq {last_seq}", flush=True)

    async def consume() -> None:
        async with (
            grpcstream.connect(target, options=options) as channel,
            grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub) as client,
            contextlib.aclosing(resuming_stream(client, request, on_reconnect)) as entries,
        ):
            async for entry in entries:
                stats.add(entry, contiguous=True)
                if on_entry is not None:
                    await on_entry(entry)

    async with asyncio.TaskGroup() as tasks:
        reader = tasks.create_task(consume())
        await stop.wait()
        reader.cancel()


async def main(seconds: float, rate: float, last: int, slow_rate: float) -> int:
    """Run the demo; return the process exit code."""
    server = LogServerProcess(0, rate, log_entries=int(rate * seconds) + 1000)
    await server.start()
    target = f"127.0.0.1:{server.port}"
    print(f"log server listening on {target}, {rate:.0f} entries/s", flush=True)
    proxy = CuttableProxy(server.port)
    await proxy.start()
    late, slow, reconnecting = Stats(), Stats(), Stats()
    stop = asyncio.Event()
    exit_code: int | None = None
    first_screen: list[str] = []

    async def show_first_screen(entry: LogEntry) -> None:
        if len(first_screen) < last:
            first_screen.append(plain_line(entry))
            if len(first_screen) == last:
                print(f"-- late viewer opened; its first screen, the last {last} lines:")
                print("\n".join(first_screen), flush=True)

    reported_missed = 0

    async def read_slowly(entry: LogEntry) -> None:
        nonlocal reported_missed
        if slow.missed > reported_missed:
            print(f"-- slow viewer: skipped ahead to seq {entry.seq}, dropped {slow.missed}")
            reported_missed = slow.missed
        await asyncio.sleep(1 / slow_rate)  # the deliberately slow reader

    start = time.monotonic()
    try:
        async with asyncio.TaskGroup() as viewers:
            viewers.create_task(
                watch(
                    f"127.0.0.1:{proxy.port}",
                    LogRequest(follow=True),
                    reconnecting,
                    stop,
                )
            )
            viewers.create_task(
                watch(
                    target,
                    LogRequest(follow=True, max_lag=max(1, int(rate / 4))),
                    slow,
                    stop,
                    options=SLOW_CHANNEL_OPTIONS,
                    on_entry=read_slowly,
                )
            )
            async with asyncio.timeout(RECONNECT_TIMEOUT):
                await reconnecting.receiving.wait()
            await asyncio.sleep(max(0.0, start + seconds / 3 - time.monotonic()))
            viewers.create_task(
                watch(
                    target,
                    LogRequest(follow=True, last=last),
                    late,
                    stop,
                    on_entry=show_first_screen,
                )
            )
            await asyncio.sleep(max(0.0, start + seconds / 2 - time.monotonic()))
            print("-- cutting the reconnecting viewer's connection", flush=True)
            proxy.cut()
            async with asyncio.timeout(RECONNECT_TIMEOUT):
                await reconnecting.reconnected.wait()
            await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
            stop.set()
        exit_code = await server.stop()
    finally:
        stop.set()
        await proxy.aclose()
        await server.kill()
    print(f"server exit code: {exit_code}")
    print(f"late viewer:         {late.summary()}; first screen {len(first_screen)} lines")
    print(
        f"slow viewer:         {slow.summary()}; dropped {slow.missed} entries"
        f" (drop_oldest, read {slow_rate:.0f}/s)"
    )
    print(f"reconnecting viewer: {reconnecting.summary()}", flush=True)
    ok = (
        late.gaps == late.duplicates == 0
        and len(first_screen) == last
        and reconnecting.gaps == reconnecting.duplicates == 0
        and reconnecting.reconnects >= 1
        and slow.missed > 0
        and slow.duplicates == 0
        and exit_code == 0
    )
    return 0 if ok else 1


async def firehose_main(seconds: float) -> int:
    """``--firehose``: entries/s of one stream, per message and batched."""
    server = LogServerProcess(0, 1.0, log_entries=1000)
    await server.start()
    try:
        per_message, batched = await measure(f"127.0.0.1:{server.port}", seconds)
    finally:
        await server.kill()
    print(report(per_message, batched), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="how long the demo runs")
    parser.add_argument("--rate", type=float, default=200.0, help="log entries per second")
    parser.add_argument("--last", type=int, default=10, help="the late viewer's first screen")
    parser.add_argument("--slow-rate", type=float, default=50.0, help="the slow viewer's pace")
    parser.add_argument("--plain", action="store_true", help="accepted; output is always plain")
    parser.add_argument(
        "--firehose",
        action="store_true",
        help="measure entries/s of one stream, per message and batched (--seconds each)",
    )
    args = parser.parse_args()
    if args.firehose:
        raise SystemExit(asyncio.run(firehose_main(args.seconds)))
    raise SystemExit(asyncio.run(main(args.seconds, args.rate, args.last, args.slow_rate)))
