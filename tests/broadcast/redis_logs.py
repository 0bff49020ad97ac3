"""Redis-backed Broadcast logs for the broadcast tests: replicas, publishers and viewers.

A replica's log tails the stream (``replica_log``), a publisher only appends
(``publisher``), ``grpc_replica`` serves a log's StreamLogs on a real StreamServer, and
``tail`` follows StreamLogs with ``resume=`` as a viewer would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeAlias

import grpc

import grpcstream
from grpcstream import Broadcast, RedisStreams, RetryEvent, RetryPolicy
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest
from tests.support.redis_replica import ReplicaLogService

LogClient: TypeAlias = "grpcstream.StreamClient[logs_pb2_grpc.LogServiceAsyncStub]"


@contextlib.asynccontextmanager
async def replica_log(
    url: str, stream: str = "logs", max_entries: int = 10_000
) -> AsyncIterator[Broadcast[LogEntry]]:
    """A replica's log: tails the stream, stamps positions into ``seq``."""
    backend = RedisStreams(url, stream, position_field="seq")
    async with Broadcast(LogEntry, max_entries=max_entries, backend=backend) as log:
        yield log


@contextlib.asynccontextmanager
async def publisher(
    url: str, stream: str = "logs", max_entries: int = 10_000, publish_timeout: float = 10.0
) -> AsyncIterator[Broadcast[LogEntry]]:
    """A publish-only log (no read loop), as a producer process would have."""
    backend = RedisStreams(url, stream, tail=False, publish_timeout=publish_timeout)
    async with Broadcast(LogEntry, max_entries=max_entries, backend=backend) as log:
        yield log


@contextlib.asynccontextmanager
async def grpc_replica(log: Broadcast[LogEntry], host: str) -> AsyncIterator[str]:
    """A StreamServer on ``host`` serving ``log``'s StreamLogs; yields its target."""
    server = grpcstream.StreamServer(f"{host}:0", grace=1.0)
    server.add(ReplicaLogService(log))  # type: ignore[abstract]  # StreamLogs only
    await server.start()
    try:
        yield f"{host}:{server.port}"
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def round_robin_over(
    a: Broadcast[LogEntry], b: Broadcast[LogEntry]
) -> AsyncIterator[grpc.aio.Channel]:
    """Serve ``a`` on 127.0.0.1 and ``b`` on 127.0.0.2; yield a round_robin channel over both."""
    async with (
        grpc_replica(a, "127.0.0.1") as target_a,
        grpc_replica(b, "127.0.0.2") as target_b,
        grpcstream.connect([target_a, target_b], load_balancing="round_robin") as channel,
    ):
        yield channel


async def publish_range(log: Broadcast[LogEntry], first: int, last: int) -> None:
    """Publish entries ``first..last`` concurrently (coalesced); check their positions."""
    positions = await asyncio.gather(
        *(log.apublish(LogEntry(message=f"entry {n}")) for n in range(first, last + 1))
    )
    assert positions == list(range(first, last + 1))


async def tail(
    channel: grpc.aio.Channel,
    count: int,
    received: list[int],
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> list[int]:
    """Follow StreamLogs from the start with resume=, until ``count`` entries arrived."""
    policy = RetryPolicy(max_attempts=50, initial_backoff=0.02, max_backoff=0.3, on_retry=on_retry)
    client: LogClient = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, retry=policy)
    async with client.server_stream(
        client.stub.StreamLogs,
        LogRequest(after_seq=0),
        resume=lambda request, last: LogRequest(after_seq=last.seq),
    ) as entries:
        async for entry in entries:
            received.append(entry.seq)
            if len(received) == count:
                break
    return received


async def read(log: Broadcast[LogEntry], after: int, count: int) -> list[int]:
    """The positions of ``count`` entries after ``after``, read from ``log``."""
    async with log.subscribe(after=after) as sub:
        return [(await anext(sub)).seq for _ in range(count)]
