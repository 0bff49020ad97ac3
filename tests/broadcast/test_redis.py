"""Broadcast over a real Redis stream: one numbering for every process, replay and
out-of-range as in memory, Redis restarts and lost entries, a replica cut off from Redis,
a slow Redis, bad configuration. Replicas here are in-process Broadcasts (each with its
own Redis connections) served by real StreamServers; tests/broadcast/test_scale_out.py uses
replica processes."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis.asyncio as aioredis

import grpcstream
from grpcstream import Broadcast, RedisStreams, RetryEvent
from grpcstream_demo.logs_pb2 import LogEntry
from tests.broadcast.redis_logs import (
    publish_range,
    publisher,
    read,
    replica_log,
    round_robin_over,
    tail,
)
from tests.support.redis_fixtures import RedisServer, free_port, redis_server
from tests.support.servers import WAIT, wait_until
from tests.support.tcp_proxy import tcp_proxy


async def test_two_publishers_share_one_dense_numbering_that_both_replicas_see(
    redis: RedisServer,
) -> None:
    async with (
        publisher(redis.url) as first,
        publisher(redis.url) as second,
        replica_log(redis.url) as a,
        replica_log(redis.url) as b,
    ):
        reading = [asyncio.create_task(read(log, 0, 2_000)) for log in (a, b)]
        sent = await asyncio.gather(
            *(
                publisher.apublish(LogEntry(message=f"{name} {n}"))
                for n in range(1_000)
                for name, publisher in (("first", first), ("second", second))
            )
        )
        async with asyncio.timeout(WAIT):
            seen = await asyncio.gather(*reading)
    assert sorted(sent) == list(range(1, 2_001))  # every entry once, no position twice
    assert seen == [list(range(1, 2_001))] * 2


async def test_a_position_from_one_replica_resumes_exactly_on_another(redis: RedisServer) -> None:
    async with (
        publisher(redis.url) as pub,
        replica_log(redis.url) as a,
        replica_log(redis.url) as b,
    ):
        await publish_range(pub, 1, 500)
        async with asyncio.timeout(WAIT):
            first = await read(a, 0, 321)
            rest = await read(b, first[-1], 179)
    assert first + rest == list(range(1, 501))


async def test_after_older_than_the_trimmed_stream_is_out_of_range_naming_the_oldest(
    redis: RedisServer,
) -> None:
    async with publisher(redis.url, max_entries=100) as pub:
        await publish_range(pub, 1, 1_000)
        # A replica that starts now holds the newest 100, as every other replica does.
        async with replica_log(redis.url, max_entries=100) as late:
            with pytest.raises(grpcstream.OutOfRange, match="the oldest entry held is 901"):
                async with late.subscribe(after=42):
                    pass
            async with asyncio.timeout(WAIT):
                assert await read(late, 900, 100) == list(range(901, 1_001))
            async with late.subscribe(after=42, on_gap="oldest") as sub:
                assert (await anext(sub)).seq == 901
                assert sub.dropped == 858


async def test_redis_restart_with_aof_viewers_resume_with_no_duplicate_and_no_loss(
    redis: RedisServer,
) -> None:
    retries: list[RetryEvent] = []
    async with (
        publisher(redis.url) as pub,
        replica_log(redis.url) as a,
        replica_log(redis.url) as b,
        round_robin_over(a, b) as channel,
    ):
        received: list[list[int]] = [[] for _ in range(4)]
        viewers = [asyncio.create_task(tail(channel, 600, got, retries.append)) for got in received]
        await publish_range(pub, 1, 300)
        await wait_until(lambda: all(len(got) == 300 for got in received), WAIT * 2)
        await redis.kill()  # every viewer is caught up: each one sees UNAVAILABLE
        await redis.start()  # same port, same AOF (appendfsync always)
        await publish_range(pub, 301, 600)  # the publisher reconnects by itself
        async with asyncio.timeout(WAIT * 3):
            results = await asyncio.gather(*viewers)
    assert results == [list(range(1, 601))] * 4
    assert {event.code for event in retries} == {grpc.StatusCode.UNAVAILABLE}
    assert len(retries) >= 4


async def test_entries_redis_lost_are_reported_to_subscribers_never_skipped() -> None:
    async with redis_server(appendonly=False) as redis, tcp_proxy(redis.port) as proxy:
        async with (
            publisher(redis.url) as pub,
            replica_log(redis.url) as a,
            replica_log(f"redis://127.0.0.1:{proxy.port}/0") as b,
        ):
            await publish_range(pub, 1, 100)
            await wait_until(lambda: b.statistics().newest == 100)
            proxy.refusing = True
            proxy.cut()  # b is cut off from Redis ...
            await publish_range(pub, 101, 150)  # ... so only a reads these
            await wait_until(lambda: a.statistics().newest == 150)
            await redis.kill()
            await redis.start()  # no persistence: the stream is gone
            # The publisher had 150: the numbering goes on after it, never reusing one.
            await publish_range(pub, 151, 160)
            proxy.refusing = False
            await wait_until(lambda: b.statistics().newest == 160)
            await wait_until(lambda: a.statistics().newest == 160)  # a reconnected too
            async with asyncio.timeout(WAIT):
                assert await read(a, 100, 60) == list(range(101, 161))  # a had them all
                with pytest.raises(grpcstream.DataLoss, match="50 entries between positions"):
                    await read(b, 100, 1)
                async with b.subscribe(after=100, on_gap="oldest") as sub:
                    assert (await anext(sub)).seq == 151
                    assert sub.dropped == 50


async def test_a_replica_cut_off_from_redis_sends_its_viewers_to_another(
    redis: RedisServer,
) -> None:
    retries: list[RetryEvent] = []
    async with tcp_proxy(redis.port) as proxy:
        async with (
            publisher(redis.url) as pub,
            replica_log(f"redis://127.0.0.1:{proxy.port}/0") as a,
            replica_log(redis.url) as b,
            round_robin_over(a, b) as channel,
        ):
            received: list[list[int]] = []
            viewers: list[asyncio.Task[list[int]]] = []

            def subscribed() -> bool:
                return a.statistics().subscribers + b.statistics().subscribers == len(viewers)

            # round_robin uses the replicas whose connections are up: add viewers until
            # some are on the replica that will be cut off (the first ones may all be on b).
            while len(viewers) < 4 or not a.statistics().subscribers:
                assert len(viewers) < 20, "round_robin never used replica a"
                received.append([])
                viewers.append(
                    asyncio.create_task(tail(channel, 400, received[-1], retries.append))
                )
                await wait_until(subscribed)
            on_a = a.statistics().subscribers
            await publish_range(pub, 1, 200)
            await wait_until(lambda: all(len(got) == 200 for got in received), WAIT * 2)
            proxy.refusing = True
            proxy.cut()
            await publish_range(pub, 201, 400)  # b keeps its connection and serves
            async with asyncio.timeout(WAIT * 3):
                results = await asyncio.gather(*viewers)
            assert a.statistics().newest == 200
            proxy.refusing = False
            await wait_until(lambda: a.statistics().newest == 400, WAIT * 2)  # a catches up
    assert results == [list(range(1, 401))] * len(viewers)
    assert len(retries) >= on_a, "each viewer on the cut-off replica resumed on the other one"


async def test_publisher_retries_while_redis_restarts_and_raises_unavailable_if_it_stays_down(
    redis: RedisServer,
) -> None:
    async with (
        publisher(redis.url, publish_timeout=0.5) as impatient,
        publisher(redis.url) as patient,
    ):
        await publish_range(patient, 1, 10)
        await redis.kill()
        with pytest.raises(grpcstream.Unavailable, match=r"unreachable for 0.5 s"):
            async with asyncio.timeout(WAIT):
                await impatient.apublish(LogEntry(message="lost?"))
        waiting = asyncio.create_task(patient.apublish(LogEntry(message="waits")))
        await redis.start()
        async with asyncio.timeout(WAIT):
            position = await waiting
        assert position == 11


@pytest.mark.slow
async def test_a_slow_redis_delays_entries_but_loses_none(redis: RedisServer) -> None:
    async with (
        publisher(redis.url) as pub,
        replica_log(redis.url) as log,
    ):
        control = aioredis.Redis.from_url(redis.url)
        reading = asyncio.create_task(read(log, 0, 1_000))
        await publish_range(pub, 1, 300)
        sleep = control.execute_command("DEBUG", "SLEEP", "1.5")  # type: ignore[no-untyped-call]
        stall = asyncio.create_task(sleep)
        await publish_range(pub, 301, 1_000)  # waits out the stall (timeout is 5 s)
        async with asyncio.timeout(WAIT):
            await stall
            assert await reading == list(range(1, 1_001))
        await control.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "not a Redis URL"),
        ("http://127.0.0.1:6379", "not a Redis URL"),
        ("redis://", "names no host"),
    ],
)
def test_a_bad_redis_url_is_a_value_error_at_construction(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStreams(url, "logs")


def test_bad_backend_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="stream must be a non-empty str"):
        RedisStreams("redis://127.0.0.1:1/0", "")
    with pytest.raises(ValueError, match="timeout must be a positive"):
        RedisStreams("redis://127.0.0.1:1/0", "logs", timeout=0)
    with pytest.raises(ValueError, match="max_batch"):
        RedisStreams("redis://127.0.0.1:1/0", "logs", max_batch=0)
    backend = RedisStreams("redis://127.0.0.1:1/0", "logs")
    with pytest.raises(ValueError, match="key= cannot be used with a backend"):
        Broadcast(LogEntry, key=lambda e: e.seq, backend=backend)
    with pytest.raises(ValueError, match="position_field='nope' is not an integer field"):
        Broadcast(
            LogEntry, backend=RedisStreams("redis://127.0.0.1:1/0", "l", position_field="nope")
        )
    with pytest.raises(TypeError, match="stores protobuf messages"):
        Broadcast(str, backend=backend)


async def test_redis_down_at_start_is_unavailable_at_start_not_a_hang() -> None:
    url = f"redis://:secret-password@127.0.0.1:{free_port()}/0"  # nothing listens there
    log = Broadcast(LogEntry, backend=RedisStreams(url, "logs", timeout=1.0))
    async with asyncio.timeout(WAIT):
        with pytest.raises(grpcstream.Unavailable, match="cannot reach Redis at") as info:
            await log.start()
    assert "secret-password" not in str(info.value)


async def test_a_server_that_never_answers_is_unavailable_at_start_not_a_hang() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # accepts, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    log = Broadcast(LogEntry, backend=RedisStreams(f"redis://127.0.0.1:{port}/0", "l", timeout=0.5))
    try:
        async with asyncio.timeout(WAIT):
            with pytest.raises(grpcstream.Unavailable, match=r"tried for up to 0.5 s"):
                await log.start()
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_misuse_of_a_redis_backed_log_is_a_usage_error(redis: RedisServer) -> None:
    log = Broadcast(LogEntry, backend=RedisStreams(redis.url, "logs"))
    with pytest.raises(grpcstream.UsageError, match="before start"):
        await log.apublish(LogEntry())
    async with log:
        with pytest.raises(grpcstream.UsageError, match="publishes with `await apublish"):
            log.publish(LogEntry())
    with pytest.raises(grpcstream.StreamClosedError):
        await log.apublish(LogEntry())
    async with publisher(redis.url) as pub:
        with pytest.raises(grpcstream.Unavailable, match="only publishes"):
            await read(pub, 0, 1)
