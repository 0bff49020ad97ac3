"""A live terminal dashboard for the log server.

Run: ``python -m examples.logs.dashboard --target 127.0.0.1:50051``. On a terminal it draws
the latest lines, counts per level, messages per second and a reconnect counter with
rich; when stdout is not a terminal (CI, a pipe) it prints one plain line per entry. It
survives a server restart: see ``resuming_stream()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import tenacity
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import Level, LogEntry, LogRequest

RECONNECT_BACKOFF = (0.1, 2.0)  # first and largest pause between attempts, in seconds
LEVEL_STYLES = {"DEBUG": "dim", "INFO": "green", "WARNING": "yellow", "ERROR": "bold red"}

# The async stub class exists only in the generated type stubs, hence the string.
LogClient: TypeAlias = "grpcstream.StreamClient[logs_pb2_grpc.LogServiceAsyncStub]"


async def resuming_stream(
    client: LogClient, request: LogRequest, on_reconnect: Callable[[int], None]
) -> AsyncGenerator[LogEntry, None]:
    """Yield ``StreamLogs`` entries forever, resuming after every interruption.

    This is the whole reconnect logic of the dashboard. When the stream fails with
    UNAVAILABLE (server restarting, draining or unreachable), the ``RetryPolicy`` waits
    with exponential backoff and jitter, and ``resume`` reopens the stream with
    ``after_seq`` set to the last entry received: nothing is lost and nothing repeats.
    ``on_reconnect(last_seq)`` is called when entries flow again.
    """
    interrupted = False

    def note_retry(event: grpcstream.RetryEvent) -> None:
        nonlocal interrupted
        interrupted = True

    policy = grpcstream.RetryPolicy(
        stop=tenacity.stop_never,  # a dashboard keeps trying for as long as it runs
        initial_backoff=RECONNECT_BACKOFF[0],
        max_backoff=RECONNECT_BACKOFF[1],
        on_retry=note_retry,
    )
    last_seq = request.after_seq
    async with client.server_stream(
        client.stub.StreamLogs,
        request,
        retry=policy,
        resume=lambda original, last: with_after(original, last.seq),
    ) as entries:
        async for entry in entries:
            if interrupted:
                interrupted = False
                on_reconnect(last_seq)
            last_seq = entry.seq
            yield entry


def with_after(request: LogRequest, after_seq: int) -> LogRequest:
    """A copy of ``request`` that resumes after ``after_seq`` (and no longer asks for ``last``)."""
    resumed = LogRequest()
    resumed.CopyFrom(request)
    resumed.after_seq = after_seq
    resumed.last = 0
    return resumed


@dataclass
class Stats:
    """What the dashboard has seen; ``gaps`` and ``duplicates`` check the sequence.

    The first entry sets the baseline (a viewer may start anywhere); after it, every jump
    in ``seq`` is a gap and ``missed`` adds up the entries skipped.
    """

    received: int = 0
    gaps: int = 0
    missed: int = 0
    duplicates: int = 0
    reconnects: int = 0
    last_seq: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    recent: deque[LogEntry] = field(default_factory=lambda: deque(maxlen=15))
    arrivals: deque[float] = field(default_factory=deque)
    receiving: asyncio.Event = field(default_factory=asyncio.Event)  # the first entry came
    reconnected: asyncio.Event = field(default_factory=asyncio.Event)  # entries flow again

    def add(self, entry: LogEntry, contiguous: bool) -> None:
        """Count ``entry``; with ``contiguous``, every seq must follow the last one."""
        if self.received and entry.seq <= self.last_seq:
            self.duplicates += 1
        elif contiguous and self.received and entry.seq != self.last_seq + 1:
            self.gaps += 1
            self.missed += entry.seq - self.last_seq - 1
        self.last_seq = max(self.last_seq, entry.seq)
        self.received += 1
        self.levels[Level.Name(entry.level)] += 1
        self.recent.append(entry)
        self.arrivals.append(time.monotonic())
        self.receiving.set()

    def rate(self) -> float:
        """Entries received during the last second."""
        horizon = time.monotonic() - 1.0
        while self.arrivals and self.arrivals[0] < horizon:
            self.arrivals.popleft()
        return float(len(self.arrivals))

    def summary(self) -> str:
        """One line for the end of a run."""
        plural = "" if self.reconnects == 1 else "s"
        return (
            f"received {self.received} entries, {self.gaps} gaps, {self.duplicates} duplicates,"
            f" {self.reconnects} reconnect{plural}"
        )


def plain_line(entry: LogEntry) -> str:
    """An entry as one line of text."""
    return f"{entry.seq:>7} {Level.Name(entry.level):<7} {entry.service:<8} {entry.message}"


def render(stats: Stats, target: str) -> Group:
    """The dashboard as a rich renderable."""
    lines = Table(title=f"latest entries from {target}", expand=True)
    for column in ("seq", "level", "service", "message"):
        lines.add_column(column, no_wrap=column != "message")
    for entry in stats.recent:
        level = Level.Name(entry.level)
        lines.add_row(
            str(entry.seq), Text(level, LEVEL_STYLES.get(level, "")), entry.service, entry.message
        )
    counters = Table.grid(padding=(0, 3))
    cells = [Text(f"{name} {stats.levels[name]}", style) for name, style in LEVEL_STYLES.items()]
    cells += [
        Text(f"{stats.rate():.0f} msg/s"),
        Text(f"reconnects {stats.reconnects}", "bold" if stats.reconnects else ""),
        Text(f"total {stats.received}"),
    ]
    counters.add_row(*cells)
    return Group(lines, counters)


async def run_dashboard(
    target: str,
    request: LogRequest,
    stats: Stats,
    stop: asyncio.Event,
    *,
    live: bool,
) -> None:
    """Show entries from ``target`` until ``stop`` is set; ``live`` picks the rich view."""
    contiguous = not request.service and request.min_level == 0

    def on_reconnect(last_seq: int) -> None:
        stats.reconnects += 1
        stats.reconnected.set()
        if not live:
            print(f"-- reconnected ({stats.reconnects}), resumed after seq {last_seq}", flush=True)

    async def consume(show: Callable[[LogEntry], None]) -> None:
        async with (
            grpcstream.connect(target) as channel,  # reconnects within 0.1-1 s of a restart
            grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub) as client,
            contextlib.aclosing(resuming_stream(client, request, on_reconnect)) as entries,
        ):
            async for entry in entries:
                stats.add(entry, contiguous)
                show(entry)

    async def until_stopped(show: Callable[[LogEntry], None]) -> None:
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(consume(show))
            await stop.wait()
            reader.cancel()

    if not live:
        await until_stopped(lambda entry: print(plain_line(entry), flush=True))
        return
    # Live redraws from get_renderable at its own pace, however fast entries arrive.
    with Live(get_renderable=lambda: render(stats, target), refresh_per_second=8):
        await until_stopped(lambda entry: None)


async def main(args: argparse.Namespace) -> int:
    """Run the dashboard for ``args.seconds`` (0: until Ctrl-C) and print a summary."""
    stats = Stats()
    stop = asyncio.Event()
    request = LogRequest(service=args.service, min_level=Level.Value(args.min_level), follow=True)
    live = sys.stdout.isatty() and not args.plain
    loop = asyncio.get_running_loop()
    if args.seconds:
        loop.call_later(args.seconds, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C: stop cleanly, print the summary
    await run_dashboard(args.target, request, stats, stop, live=live)
    print(stats.summary(), flush=True)
    return 0 if stats.duplicates == 0 and stats.gaps == 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The dashboard's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--service", default="", help="only this service (default: all)")
    parser.add_argument("--min-level", default="LEVEL_UNSPECIFIED", choices=Level.keys())
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long")
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
