"""Broadcast benchmarks: ``python -m benchmarks.broadcast [--quick | --tiny]`` (in ``make bench``).

Three measurements, written to ``benchmarks/results/broadcast.md`` and ``broadcast.json``:

1. **Publish cost per entry** with 1, 100 and 1,000 subscribers, in this process, no
   gRPC. *Idle* subscribers hold a cursor and are not reading; *waiting* subscribers are
   parked in ``anext()`` and woken after each burst of 100 publishes (the wake-ups run
   after the burst, outside ``publish()``, and are timed separately). Best of several
   rounds, with the garbage collector off while timing (as ``timeit`` does). Target:
   1,000 subscribers cost at most 2x one subscriber.
2. **Fan-out throughput**: one publisher to 10 and 100 streaming gRPC subscribers in one
   server process (``benchmarks.broadcast_server``), entries delivered per second in
   total, ``Broadcast.serve()`` against the hand-written one-``asyncio.Queue``-per-
   subscriber fan-out in the same server, alternating A/B. The client is this process.
3. **Memory**: a fresh server's RSS with a 100,000-entry log, then with 1,000 gRPC
   subscribers on it: per entry and per subscriber. The Broadcast's own per-subscriber
   constant (without the gRPC stream) is measured with tracemalloc in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Final

import psutil

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest, StatusRequest

from .common import make_entry
from .processes import BenchProcessError, _Child
from .report import collect_machine_info

__all__ = ["main", "measure_publish_cost", "subscription_bytes"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BURST: Final = 100


# -- 1. publish cost ----------------------------------------------------------------------


async def _publish_round(log: grpcstream.Broadcast[LogEntry], count: int) -> tuple[float, float]:
    """Publish ``count`` entries in bursts; return (publish seconds, wake-up seconds)."""
    entry = make_entry()
    publish = log.publish
    spent = woke = 0.0
    for _ in range(count // BURST):
        start = time.perf_counter()
        for _ in range(BURST):
            publish(entry)
        spent += time.perf_counter() - start
        if log._wake_pending:  # time the one wake-up callback of this burst on its own
            start = time.perf_counter()
            log._wake_waiting()
            woke += time.perf_counter() - start
        await asyncio.sleep(0)  # woken subscribers read and park again
        await asyncio.sleep(0)
    return spent, woke


async def measure_publish_cost(
    counts: tuple[int, ...], entries: int, rounds: int, waiting: bool
) -> dict[int, tuple[float, float]]:
    """Best µs per entry for publish() and for the wake-ups, per subscriber count.

    The configurations take turns within each round (1, 100, 1,000, 1, 100, ...), so a
    busy machine slows them alike; the best round of each is kept.
    """
    logs: dict[int, grpcstream.Broadcast[LogEntry]] = {}
    readers: list[asyncio.Task[None]] = []
    subs: list[grpcstream.Subscription[LogEntry]] = []

    async def read_forever(sub: grpcstream.Subscription[LogEntry]) -> None:
        async for _ in sub:
            pass

    for count in counts:
        log = logs[count] = grpcstream.Broadcast(LogEntry, max_entries=10_000)
        for _ in range(count):
            sub = log.subscribe(policy="drop_oldest", max_lag=1)
            await sub.__aenter__()
            subs.append(sub)
            if waiting:
                readers.append(asyncio.create_task(read_forever(sub)))
    await asyncio.sleep(0)
    best = {count: (float("inf"), float("inf")) for count in counts}
    for _ in range(rounds):
        for count in counts:
            gc.collect()
            gc.disable()  # as timeit does: a collection the readers trigger is not publish's
            try:
                spent, woke = await _publish_round(logs[count], entries)
            finally:
                gc.enable()
            publish_us, wake_us = spent / entries * 1e6, woke / entries * 1e6
            best[count] = (min(best[count][0], publish_us), min(best[count][1], wake_us))
    for task in readers:
        task.cancel()
    if readers:
        await asyncio.wait(readers)
    for sub in subs:
        sub.close()
    return best


async def subscription_bytes(count: int) -> float:
    """Bytes per subscription that holds a cursor and is parked waiting, via tracemalloc."""
    log = grpcstream.Broadcast(LogEntry)
    log.publish(make_entry())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        subs = [log.subscribe() for _ in range(count)]
        for sub in subs:
            await sub.__aenter__()
        waits = [asyncio.ensure_future(sub._wait()) for sub in subs]
        await asyncio.sleep(0)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [tracemalloc.Filter(True, "*grpcstream*", all_frames=True)]
    grown = sum(
        stat.size_diff
        for stat in after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename")
    )
    for task in waits:
        task.cancel()
    await asyncio.wait(waits)
    for sub in subs:
        sub.close()
    return grown / count


# -- 2. and 3.: the gRPC server ----------------------------------------------------------


class FanoutServer:
    """``benchmarks.broadcast_server`` as a child process."""

    def __init__(self, max_entries: int) -> None:
        self._child = _Child(
            ["-m", "benchmarks.broadcast_server", f"--max-entries={max_entries}"],
            "broadcast server",
        )
        line = self._child.read_line(30.0)
        word, _, port = line.partition(" ")
        if word != "PORT":
            self._child.close()
            raise BenchProcessError(f"broadcast server printed {line!r}")
        self.port = int(port)
        self.process = psutil.Process(self._child.pid)

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def close(self) -> None:
        self._child.close()


async def _fanout_run(
    client: Any, server: FanoutServer, impl: str, subscribers: int, count: int
) -> dict[str, float]:
    request = LogRequest(service=impl, limit=count)

    async def follow() -> int:
        received = 0
        async with client.server_stream(client.stub.StreamLogs, request) as entries:
            async for _ in entries:
                received += 1
        return received

    readers = [asyncio.create_task(follow()) for _ in range(subscribers)]
    command = StatusRequest(service=f"publish:{impl}:{count}:{subscribers}")
    cpu_before = server.cpu()
    start = time.perf_counter()
    await client.unary(client.stub.GetStatus, command, timeout=120.0)
    delivered = sum(await asyncio.gather(*readers))
    elapsed = time.perf_counter() - start
    server_cpu = server.cpu() - cpu_before
    return {
        "delivered": delivered,
        "elapsed_s": elapsed,
        "rate": delivered / elapsed,
        "server_cpu_us_per_entry": server_cpu / delivered * 1e6,
    }


async def measure_fanout(sizes: list[tuple[int, int]], repeats: int) -> list[dict[str, Any]]:
    """Fan-out runs, alternating broadcast and queues, for each (subscribers, count)."""
    server = FanoutServer(max_entries=100_000)
    results: list[dict[str, Any]] = []
    try:
        async with grpcstream.connect(f"127.0.0.1:{server.port}") as channel:
            client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=120.0)
            await _fanout_run(client, server, "broadcast", 2, 200)  # warm-up, both paths
            await _fanout_run(client, server, "queues", 2, 200)
            for subscribers, count in sizes:
                for repeat in range(repeats):
                    for impl in ("queues", "broadcast"):
                        figures = await _fanout_run(client, server, impl, subscribers, count)
                        run: dict[str, Any] = dict(figures)
                        run.update(impl=impl, subscribers=subscribers, repeat=repeat)
                        results.append(run)
                        _log(
                            f"fan-out {impl} x{subscribers} #{repeat}: {run['rate']:,.0f}"
                            f" entries/s, server {run['server_cpu_us_per_entry']:.1f} µs/entry"
                        )
    finally:
        server.close()
    return results


async def measure_memory(entries: int, subscribers: int) -> dict[str, float]:
    """Server RSS: empty, with an ``entries`` log, then with ``subscribers`` on it."""
    server = FanoutServer(max_entries=entries)
    try:
        async with grpcstream.connect(f"127.0.0.1:{server.port}") as channel:
            client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=120.0)
            fill = StatusRequest(service="fill:100")
            await client.unary(client.stub.GetStatus, fill)
            warm = await _open_followers(client, 16)
            rss_empty = server.rss()
            fill = StatusRequest(service=f"fill:{entries}")
            await client.unary(client.stub.GetStatus, fill)
            rss_log = server.rss()
            streams = await _open_followers(client, subscribers)
            rss_subscribers = server.rss()
            for stream in [*streams, *warm]:
                stream.cancel()
            await asyncio.wait([*streams, *warm])
    finally:
        server.close()
    return {
        "entries": entries,
        "subscribers": subscribers,
        "rss_before_mb": rss_empty / 2**20,
        "rss_with_log_mb": rss_log / 2**20,
        "rss_with_subscribers_mb": rss_subscribers / 2**20,
        "bytes_per_entry": (rss_log - rss_empty) / entries,
        "bytes_per_subscriber": (rss_subscribers - rss_log) / subscribers,
    }


async def _open_followers(client: Any, count: int) -> list[asyncio.Task[None]]:
    """``count`` idle followers (last=1), each past its first entry: its cursor exists."""
    arrived: list[asyncio.Future[None]] = []

    async def follow(arrival: asyncio.Future[None]) -> None:
        request = LogRequest(service="broadcast", last=1)
        async with client.server_stream(client.stub.StreamLogs, request) as entries:
            async for _ in entries:
                if not arrival.done():
                    arrival.set_result(None)

    loop = asyncio.get_running_loop()
    tasks = []
    for _ in range(count):
        arrival: asyncio.Future[None] = loop.create_future()
        arrived.append(arrival)
        tasks.append(asyncio.create_task(follow(arrival)))
    async with asyncio.timeout(120):
        await asyncio.gather(*arrived)
    return tasks


# -- the report ---------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def render(document: dict[str, Any]) -> str:
    """The markdown report."""
    machine = document["machine"]
    lines = [
        "# Broadcast: publish cost, fan-out throughput, memory",
        "",
        f"Run on {machine['date_utc']} ({document['size']} size, git {machine['git_commit']}).",
        "",
        f"- Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores",
        f"- Load average (1, 5, 15 min) at start: {_load(machine['load_average_start'])};"
        f" at end: {_load(machine['load_average_end'])}",
        "",
        "## Publish cost per entry (no gRPC)",
        "",
        f"Best of {document['publish_rounds']} rounds of {document['publish_count']:,}"
        " publishes. Waiting subscribers are woken once per burst of 100 entries;"
        " that wake-up callback runs after the burst, not inside `publish()`.",
        "",
        "| subscribers | publish, idle (µs/entry) | publish, waiting (µs/entry)"
        " | wake-ups, waiting (µs/entry) |",
        "|---|---|---|---|",
    ]
    cost = document["publish"]
    for row in cost:
        lines.append(
            f"| {row['subscribers']:,} | {row['idle_us']:.3f} | {row['waiting_us']:.3f}"
            f" | {row['wake_us']:.3f} |"
        )
    one, thousand = cost[0], cost[-1]
    lines += [
        "",
        f"1,000 ÷ 1 subscriber: idle {thousand['idle_us'] / one['idle_us']:.2f}x, waiting"
        f" {thousand['waiting_us'] / one['waiting_us']:.2f}x (target ≤ 2x).",
        "",
        "## Fan-out throughput over gRPC",
        "",
        "One server process, one publisher, N streaming subscribers in one client process."
        " Median (min-max) over the repeats; server CPU is per entry delivered.",
        "",
        "| subscribers | entries/subscriber | queue per subscriber (entries/s) | Broadcast"
        " (entries/s) | ratio | server CPU µs/entry, queues / Broadcast |",
        "|---|---|---|---|---|---|",
    ]
    runs = document["fanout"]
    for subscribers, count in document["fanout_sizes"]:
        queues = [r for r in runs if r["impl"] == "queues" and r["subscribers"] == subscribers]
        ours = [r for r in runs if r["impl"] == "broadcast" and r["subscribers"] == subscribers]
        if not queues or not ours:
            continue
        lines.append(
            f"| {subscribers} | {count:,} | {_cell(queues)} | {_cell(ours)}"
            f" | {_median(ours, 'rate') / _median(queues, 'rate'):.2f}"
            f" | {_median(queues, 'server_cpu_us_per_entry'):.1f} /"
            f" {_median(ours, 'server_cpu_us_per_entry'):.1f} |"
        )
    memory = document["memory"]
    lines += [
        "",
        "## Memory",
        "",
        f"A fresh server: RSS {memory['rss_before_mb']:.1f} MiB; with a"
        f" {memory['entries']:,}-entry log {memory['rss_with_log_mb']:.1f} MiB; with"
        f" {memory['subscribers']:,} gRPC subscribers on it"
        f" {memory['rss_with_subscribers_mb']:.1f} MiB.",
        "",
        f"- Per log entry (a ~150-byte `LogEntry`): {memory['bytes_per_entry']:,.0f} bytes.",
        f"- Per gRPC subscriber (its stream, handler task, send queue and cursor):"
        f" {memory['bytes_per_subscriber'] / 1024:,.1f} KiB, whatever the log's size.",
        f"- Of which the Broadcast's own cursor (a parked `Subscription`, tracemalloc):"
        f" {document['subscription_bytes']:,.0f} bytes.",
        "",
        "A queue-per-subscriber fan-out holding the same backlog for each subscriber would"
        " hold one reference per entry per subscriber: 8 bytes x 100,000 x 1,000 = 800 MB"
        " of references alone.",
        "",
    ]
    return "\n".join(lines)


def _cell(runs: list[dict[str, Any]]) -> str:
    rates = [run["rate"] for run in runs]
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def _load(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


SIZES: Final[dict[str, dict[str, Any]]] = {
    "default": {
        "publish_count": 20_000,
        "publish_rounds": 10,
        "fanout": [(10, 5_000), (100, 500)],
        "repeats": 3,
        "memory": (100_000, 1_000),
    },
    "quick": {
        "publish_count": 10_000,
        "publish_rounds": 3,
        "fanout": [(10, 1_000), (100, 100)],
        "repeats": 1,
        "memory": (20_000, 200),
    },
    "tiny": {
        "publish_count": 1_000,
        "publish_rounds": 1,
        "fanout": [(10, 50), (100, 5)],
        "repeats": 1,
        "memory": (1_000, 20),
    },
}


async def run(size: str) -> dict[str, Any]:
    """Run every measurement of ``size``; return the JSON document."""
    config = SIZES[size]
    machine = collect_machine_info()
    counts = (1, 100, 1_000)
    count, rounds = config["publish_count"], config["publish_rounds"]
    idle = await measure_publish_cost(counts, count, rounds, waiting=False)
    waiting = await measure_publish_cost(counts, count, rounds, waiting=True)
    publish = [
        {
            "subscribers": n,
            "idle_us": idle[n][0],
            "waiting_us": waiting[n][0],
            "wake_us": waiting[n][1],
        }
        for n in counts
    ]
    _log(f"publish: {publish}")
    fanout = await measure_fanout(config["fanout"], config["repeats"])
    memory = await measure_memory(*config["memory"])
    _log(f"memory: {memory}")
    machine["load_average_end"] = list(os.getloadavg())
    return {
        "machine": machine,
        "size": size,
        "publish_count": config["publish_count"],
        "publish_rounds": config["publish_rounds"],
        "publish": publish,
        "fanout_sizes": config["fanout"],
        "fanout": fanout,
        "memory": memory,
        "subscription_bytes": await subscription_bytes(1_000),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m benchmarks.broadcast [--quick | --tiny] [--output-dir D]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true")
    group.add_argument("--tiny", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "tiny" if args.tiny else "default"
    document = asyncio.run(run(size))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "broadcast.json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = render(document)
    (args.output_dir / "broadcast.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
