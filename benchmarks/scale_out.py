"""Scale-out benchmark: a Broadcast through Redis to viewers on three replicas, against
the in-memory Broadcast on one replica, in the same run.

``python -m benchmarks.scale_out [--quick | --tiny] [--output-dir DIR]`` (``make bench``
runs it after the main harness). For each backend:

- **throughput**: one publisher publishes ``--entries`` entries as fast as it can while
  ``--viewers`` viewers (spread over the replicas) read them all through
  ``ReplicaLogs.TailBatches`` (entries that are ready together travel in one message:
  the coalescing this benchmark has). Figure: entries/s, from the first publish until
  the last viewer has the last entry; every viewer gets every entry.
- **latency**: the same viewers, caught up, while the publisher publishes
  ``--latency-entries`` entries at ``--rate`` entries/s. Figure: publish-to-viewer time,
  p50 and p99, from the wall-clock time stamped in each entry to its arrival.

In-memory: the publisher runs in the one replica's process (that is the only place an
in-process log can be published to). Redis: the publisher is this process (coalescing
concurrent ``apublish()`` calls into batches), Redis 7 runs with AOF and the default
``appendfsync everysec``, and the three replicas listen on 127.0.0.1, .2 and .3.
Writes ``scale_out.md`` and ``scale_out.json`` in the output directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

import grpcstream
from benchmarks.scale_out_common import paced, stamped
from grpcstream_demo import replica_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest
from tests.support.redis_fixtures import RedisServer, replicas

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@dataclass
class Result:
    backend: str
    replicas: int
    viewers: int
    entries: int
    seconds: float
    entries_per_second: float
    latency_entries: int
    latency_p50_ms: float
    latency_p99_ms: float


class Viewers:
    """``count`` TailBatches readers spread over ``channels``, each reading ``total``."""

    def __init__(self, channels: list[grpc.aio.Channel], count: int) -> None:
        self.clients = [
            grpcstream.StreamClient(channels[n % len(channels)], replica_pb2_grpc.ReplicaLogsStub)
            for n in range(count)
        ]

    def start(
        self, after: int, total: int, latencies: list[int] | None, ready: list[asyncio.Event]
    ) -> list[asyncio.Task[int]]:
        return [
            asyncio.create_task(_view(client, after, total, latencies, event))
            for client, event in zip(self.clients, ready, strict=True)
        ]


async def _view(
    client: grpcstream.StreamClient[replica_pb2_grpc.ReplicaLogsAsyncStub],
    after: int,
    total: int,
    latencies: list[int] | None,
    ready: asyncio.Event,
) -> int:
    count = 0
    request = LogRequest(after_seq=after, limit=total)
    async with client.server_stream(client.stub.TailBatches, request) as batches:
        async for batch in batches:
            now = time.time_ns()
            entries = batch.entries
            if latencies is not None:
                for entry in entries[1:] if count == 0 else entries:  # the first: warm-up
                    latencies.append(now - entry.timestamp.ToNanoseconds())
            count += len(entries)
            ready.set()
    return count


async def measure(
    backend: str,
    channels: list[grpc.aio.Channel],
    publish: PublishFn,
    args: argparse.Namespace,
) -> Result:
    viewers = Viewers(channels, args.viewers)
    ready = [asyncio.Event() for _ in range(args.viewers)]
    tasks = viewers.start(0, args.entries, None, ready)
    started = time.perf_counter()
    await publish(args.entries, 0.0)
    counts = await asyncio.wait_for(asyncio.gather(*tasks), 600)
    seconds = time.perf_counter() - started
    assert counts == [args.entries] * args.viewers, counts

    latencies: list[int] = []
    ready = [asyncio.Event() for _ in range(args.viewers)]
    tasks = viewers.start(args.entries, args.latency_entries + 1, latencies, ready)
    await publish(1, 0.0)  # warm-up entry: every viewer is subscribed and caught up
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), 60)
    await publish(args.latency_entries, args.rate)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    cuts = statistics.quantiles(latencies, n=100)
    return Result(
        backend=backend,
        replicas=len({id(c) for c in channels}),
        viewers=args.viewers,
        entries=args.entries,
        seconds=round(seconds, 2),
        entries_per_second=round(args.entries / seconds),
        latency_entries=len(latencies),
        latency_p50_ms=round(cuts[49] / 1e6, 2),
        latency_p99_ms=round(cuts[98] / 1e6, 2),
    )


class PublishFn:
    async def __call__(self, count: int, rate: float) -> None:
        raise NotImplementedError


class MemoryPublisher(PublishFn):
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def __call__(self, count: int, rate: float) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"PUBLISH {count} {rate}\n".encode())
        line = await asyncio.wait_for(self.process.stdout.readline(), 600)
        assert line.strip() == b"PUBLISHED", line


class RedisPublisher(PublishFn):
    def __init__(self, log: grpcstream.Broadcast[LogEntry]) -> None:
        self.log = log

    async def __call__(self, count: int, rate: float) -> None:
        if rate > 0:
            async for _ in paced(count, rate):
                await self.log.apublish(stamped())
            return
        for first in range(0, count, 2_000):  # concurrent calls: coalesced into batches
            chunk = min(2_000, count - first)
            await asyncio.gather(*(self.log.apublish(stamped()) for _ in range(chunk)))


@contextlib.asynccontextmanager
async def memory_replica(max_entries: int) -> AsyncIterator[tuple[str, PublishFn]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.scale_out_server",
        "--max-entries",
        str(max_entries),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        yield f"127.0.0.1:{int(line.split()[1])}", MemoryPublisher(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def run(args: argparse.Namespace) -> list[Result]:
    max_entries = args.entries + args.latency_entries + 10
    results = []
    async with (
        memory_replica(max_entries) as (target, publish),
        grpcstream.connect(target) as channel,
    ):
        results.append(await measure("in-memory", [channel], publish, args))
    with tempfile.TemporaryDirectory(prefix="grpcstream-bench-redis-") as directory:
        redis = RedisServer(Path(directory), fsync="everysec")
        await redis.start()
        try:
            backend = grpcstream.RedisStreams(redis.url, "bench", tail=False)
            async with (
                grpcstream.Broadcast(LogEntry, max_entries=max_entries, backend=backend) as log,
                replicas(redis.url, "bench", "--max-entries", str(max_entries)) as started,
            ):
                channels = [grpcstream.connect(replica.target) for replica in started]
                try:
                    results.append(
                        await measure("Redis Streams", channels, RedisPublisher(log), args)
                    )
                finally:
                    for channel in channels:
                        await channel.close()
        finally:
            await redis.kill()
    return results


def report(results: list[Result], load: tuple[str, str], args: argparse.Namespace) -> str:
    memory, through_redis = results
    lines = [
        "# Scale-out: Broadcast through Redis Streams vs in memory",
        "",
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores;"
        f" `python -m benchmarks.scale_out {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"- Load average (1, 5, 15 min) at start: {load[0]}; at end: {load[1]}",
        f"- {args.viewers} viewers; {args.entries:,} entries for throughput; latency:"
        f" {args.latency_entries:,} entries at {args.rate:g} entries/s",
        "",
        "| backend | replicas | viewers | entries/s (every viewer gets each) | p50 publish→viewer"
        " (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| {result.backend} | {result.replicas} | {result.viewers} |"
            f" {result.entries_per_second:,} | {result.latency_p50_ms} |"
            f" {result.latency_p99_ms} |"
        )
    ratio = through_redis.entries_per_second / memory.entries_per_second
    lines += [
        "",
        f"Redis ÷ in-memory throughput: {ratio:.2f}. Added latency through Redis:"
        f" p50 {through_redis.latency_p50_ms - memory.latency_p50_ms:+.2f} ms,"
        f" p99 {through_redis.latency_p99_ms - memory.latency_p99_ms:+.2f} ms.",
        "",
    ]
    return "\n".join(lines)


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="20k entries")
    size.add_argument("--tiny", action="store_true", help="smoke test: 500 entries")
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--latency-entries", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.latency_entries = 20_000, 1_000
    if args.tiny:
        args.entries, args.latency_entries, args.rate = 500, 100, 1_000.0
    load_start = _load()
    results = asyncio.run(run(args))
    text = report(results, (load_start, _load()), args)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "scale_out.md").write_text(text)
    document = {"results": [asdict(r) for r in results], "args": vars(args) | {"output_dir": ""}}
    (args.output_dir / "scale_out.json").write_text(json.dumps(document, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
