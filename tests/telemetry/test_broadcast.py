"""Telemetry of a Broadcast (``Telemetry.observe_broadcast``), read from the SDK's reader.

A real ``Broadcast``; each test asserts the exact numbers the known run produces, against
the log's and the subscriptions' own ``statistics()``.
"""

from __future__ import annotations

import gc

import pytest

import grpcstream
from grpcstream_demo.logs_pb2 import LogEntry
from tests.telemetry.otel import Otel


async def test_broadcast_size_lag_and_drops_are_the_log_s_own_statistics(otel: Otel) -> None:
    log = grpcstream.Broadcast(LogEntry, max_entries=1000, max_bytes=1_000_000)
    otel.telemetry.observe_broadcast(log, name="logs")
    otel.telemetry.observe_broadcast(log, name="logs")  # the same log again: no-op

    def metric(name: str) -> int | float:
        return otel.value(f"grpcstream.broadcast.{name}", grpcstream__broadcast__name="logs")

    async with log.subscribe(policy="drop_oldest") as fast:
        async with log.subscribe(policy="drop_oldest", max_lag=10) as slow:
            for seq in range(1, 501):
                log.publish(LogEntry(seq=seq))
            stats = log.statistics()
            assert (metric("entries"), metric("size")) == (500, stats.bytes)
            assert stats.bytes > 0
            assert (metric("published"), metric("subscribers")) == (500, 2)
            assert (metric("subscriber.lag"), metric("subscriber.dropped")) == (500, 0)

            assert (await anext(slow)).seq == 491  # skipped ahead to max_lag behind
            for _ in range(200):
                await anext(fast)
            assert slow.statistics().dropped == 490
            assert fast.statistics().lag == 300
            assert slow.statistics().lag == 9
            assert metric("subscriber.lag") == 300  # the slowest open subscriber
            assert metric("subscriber.dropped") == 490
        # The slow subscriber closed: its drops stay counted, its lag is gone.
        assert metric("subscribers") == 1
        assert metric("subscriber.dropped") == 490
        assert metric("subscriber.lag") == 300
    assert (metric("subscribers"), metric("subscriber.lag")) == (0, 0)
    assert {
        attrs["grpcstream.broadcast.name"]
        for attrs, _ in otel.points("grpcstream.broadcast.entries")
    } == {"logs"}


async def test_observe_broadcast_rejects_bad_input(otel: Otel) -> None:
    log = grpcstream.Broadcast(LogEntry)
    otel.telemetry.observe_broadcast(log, name="a")
    with pytest.raises(ValueError, match="already observed as 'a'"):
        otel.telemetry.observe_broadcast(grpcstream.Broadcast(LogEntry), name="a")
    with pytest.raises(ValueError, match="empty"):
        otel.telemetry.observe_broadcast(log, name="")
    with pytest.raises(TypeError, match="takes a Broadcast"):
        otel.telemetry.observe_broadcast([], name="b")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str"):
        otel.telemetry.observe_broadcast(log, name=1)  # type: ignore[arg-type]


async def test_a_collected_broadcast_is_no_longer_reported(otel: Otel) -> None:
    log = grpcstream.Broadcast(LogEntry)
    otel.telemetry.observe_broadcast(log, name="gone")
    log.publish(LogEntry(seq=1))
    assert otel.value("grpcstream.broadcast.entries") == 1
    del log
    gc.collect()
    assert otel.points("grpcstream.broadcast.entries") == []
    # Its name is free again.
    otel.telemetry.observe_broadcast(grpcstream.Broadcast(LogEntry), name="gone")
