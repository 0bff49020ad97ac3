"""Scale-out: clients balance over replicas, and replica processes share one Redis stream.

``connect()`` with a list of addresses follows its load-balancing policy over real
servers; three replica processes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 share one Redis
stream, and clients balance over them with round_robin and resume across them when one
is restarted or killed."""

from __future__ import annotations

import asyncio
from typing import Literal

import grpc
import pytest

import grpcstream
from grpcstream import RetryEvent, RetryPolicy
from grpcstream_demo import logs_pb2_grpc, replica_pb2_grpc
from grpcstream_demo.logs_pb2 import LogRequest, Status, StatusRequest
from tests.broadcast.redis_logs import publish_range, publisher, tail
from tests.support.redis_fixtures import RedisServer, Replica, replicas
from tests.support.servers import WAIT, wait_until

STEP = 200


class NamedStatus(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """GetStatus answers with the name it was given: which server took the call."""

    def __init__(self, name: str) -> None:
        self.name = name

    @grpcstream.unary
    async def GetStatus(self, request: StatusRequest, context: grpcstream.CallContext) -> Status:
        return Status(service=self.name)


@pytest.mark.parametrize(("policy", "spread"), [("round_robin", 3), ("pick_first", 1)])
async def test_calls_over_three_addresses_follow_the_load_balancing_policy(
    policy: Literal["round_robin", "pick_first"], spread: int
) -> None:
    servers = []
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        server = grpcstream.StreamServer(f"{host}:0")
        server.add(NamedStatus(host))  # type: ignore[abstract]  # GetStatus only
        await server.start()
        servers.append(server)
    targets = [
        f"{host}:{s.port}"
        for host, s in zip(("127.0.0.1", "127.0.0.2", "127.0.0.3"), servers, strict=True)
    ]
    try:
        async with grpcstream.connect(targets, load_balancing=policy) as channel:
            client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=WAIT)
            await channel.channel_ready()
            names = [
                (await client.unary(client.stub.GetStatus, StatusRequest())).service
                for _ in range(30)
            ]
    finally:
        for server in servers:
            await server.stop(0)
    assert len(set(names)) == spread
    if policy == "pick_first":
        assert set(names) == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ([], "non-empty list"),
        (["logs.internal:50051"], "is not 'ip:port'"),
        (["127.0.0.1"], "is not 'ip:port'"),
        (["127.0.0.1:1", "[::1]:2"], "mix IPv4 and IPv6"),
    ],
)
def test_a_bad_address_list_is_a_value_error(target: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grpcstream.connect(target)


def test_an_unknown_load_balancing_policy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="load_balancing must be"):
        grpcstream.connect("127.0.0.1:1", load_balancing="random")  # type: ignore[arg-type]


@pytest.mark.slow
async def test_rolling_restart_then_kills_a_round_robin_client_gets_exactly_1_to_n(
    redis: RedisServer,
) -> None:
    retries: list[RetryEvent] = []
    async with (
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
async def test_30_viewers_over_3_replicas_each_get_exactly_1_to_100k(redis: RedisServer) -> None:
    total, chunk = 100_000, 5_000
    async with (
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
