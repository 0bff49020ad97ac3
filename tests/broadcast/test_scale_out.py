"""Scale-out with real processes: three replicas on 127.0.0.1, 127.0.0.2 and 127.0.0.3
share one Redis stream; clients balance over them with round_robin and resume across
them when one is restarted or killed."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import grpcstream
from grpcstream import RetryEvent, RetryPolicy
from grpcstream_demo import replica_pb2_grpc
from grpcstream_demo.logs_pb2 import LogRequest
from tests.broadcast.test_redis import publish_range, publisher, tail
from tests.support.redis_fixtures import Replica, redis_server, replicas
from tests.support.servers import WAIT, wait_until

STEP = 200


@pytest.mark.slow
async def test_rolling_restart_then_kills_a_round_robin_client_gets_exactly_1_to_n() -> None:
    retries: list[RetryEvent] = []
    async with (
        redis_server() as redis,
        publisher(redis.url, "rolling") as pub,
        replicas(redis.url, "rolling", "--grace", "1") as started,
        grpcstream.connect([r.target for r in started], load_balancing="round_robin") as channel,
    ):
        received: list[int] = []
        total = 0

        async def publish_more() -> None:
            nonlocal total
            await publish_range(pub, total + 1, total + STEP)
            total += STEP

        viewer = asyncio.create_task(tail(channel, STEP * 13, received, retries.append))
        plan: list[tuple[Replica, str]] = [(r, "SIGTERM") for r in started]
        plan += [(r, "SIGKILL") for r in started]
        for replica, signal in plan:
            await publish_more()
            # Caught up: the stream is live on one replica, whichever goes away next.
            await wait_until(lambda: len(received) == total, WAIT * 3)
            await (replica.terminate() if signal == "SIGTERM" else replica.kill())
            await publish_more()  # published while that replica is away
            await replica.start()  # back on the same address
        await publish_more()
        async with asyncio.timeout(WAIT * 3):
            result = await viewer
    assert result == list(range(1, STEP * 13 + 1))
    # Each round (SIGTERMs, SIGKILLs) hits the replica serving the stream at least once.
    assert len(retries) >= 2
    assert {event.code for event in retries} == {grpc.StatusCode.UNAVAILABLE}


async def check_batches(channel: grpc.aio.Channel, total: int) -> tuple[int, int]:
    """Read TailBatches from the start; (entries in order 1, 2, 3..., first wrong seq or 0)."""
    client = grpcstream.StreamClient(
        channel,
        replica_pb2_grpc.ReplicaLogsStub,
        retry=RetryPolicy(max_attempts=20, initial_backoff=0.05, max_backoff=0.5),
    )
    expected = 1
    async with client.server_stream(
        client.stub.TailBatches,
        LogRequest(after_seq=0),
        resume=lambda request, last: LogRequest(after_seq=last.entries[-1].seq),
    ) as batches:
        async for batch in batches:
            for entry in batch.entries:
                if entry.seq != expected:
                    return expected - 1, entry.seq
                expected += 1
            if expected > total:
                break
    return expected - 1, 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_30_viewers_over_3_replicas_each_get_exactly_1_to_100k() -> None:
    total, chunk = 100_000, 5_000
    async with (
        redis_server() as redis,
        publisher(redis.url, "fanout", max_entries=total) as pub,
        replicas(redis.url, "fanout", "--max-entries", str(total)) as started,
    ):
        channels = [grpcstream.connect(replica.target) for replica in started]
        try:
            viewers = [
                asyncio.create_task(check_batches(channels[n % 3], total)) for n in range(30)
            ]
            for first in range(1, total + 1, chunk):
                await publish_range(pub, first, first + chunk - 1)
            async with asyncio.timeout(240):
                results = await asyncio.gather(*viewers)
        finally:
            for channel in channels:
                await channel.close()
    assert results == [(total, 0)] * 30
