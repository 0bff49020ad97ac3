"""Telemetry for coalescing and Broadcast, read back from the OpenTelemetry SDK's reader.

A real server with ``batching=`` and a real ``Broadcast``; each test asserts the exact
numbers the known run produces, against the objects' own ``statistics()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogBatch, LogEntry, LogRequest
from tests.support.batch_servicer import BatchedLogService, entry
from tests.support.servers import WAIT, serving, wait_until
from tests.telemetry.test_telemetry import Otel

N = 300


@pytest.fixture
def otel() -> Iterator[Otel]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    telemetry = grpcstream.Telemetry(meter_provider=meters, tracer_provider=TracerProvider())
    yield Otel(telemetry, reader, spans=None)  # type: ignore[arg-type]
    meters.shutdown()


class Coalescing(BatchedLogService):
    """Keeps the streams it served, to read their final totals."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[grpcstream.ServerStream[LogEntry]] = []

    async def send_all(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        self.streams.append(stream)
        for seq in range(1, request.limit + 1):
            try:
                stream.send_nowait(entry(seq))  # queue all it can: batches fill up
            except grpcstream.WouldBlock:
                await stream.send(entry(seq))


def coalescing(batching: grpcstream.Batching[LogBatch, LogEntry]) -> Coalescing:
    """A servicer whose StreamLogBatches coalesces with ``batching``."""

    class Service(Coalescing):
        @grpcstream.server_streaming(batching=batching)
        async def StreamLogBatches(
            self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
        ) -> None:
            await self.send_all(request, stream)

    return Service()


async def run_batched(otel: Otel, batching: grpcstream.Batching[LogBatch, LogEntry]) -> Coalescing:
    service = coalescing(batching)
    async with (
        serving(service, telemetry=otel.telemetry) as (_, target),
        grpcstream.connect(target) as channel,
        grpcstream.StreamClient(
            channel, logs_pb2_grpc.LogBatchServiceStub, telemetry=otel.telemetry, timeout=WAIT
        ) as client,
    ):
        async with client.server_stream(
            client.stub.StreamLogBatches, LogRequest(limit=N), batching=batching
        ) as entries:
            assert [item.seq async for item in entries] == list(range(1, N + 1))
        await wait_until(lambda: otel.telemetry.open_streams == 0)
    return service


async def test_one_entry_batches_count_every_entry_as_a_batch(otel: Otel) -> None:
    one = grpcstream.Batching(LogBatch, LogEntry, field="entries", max_entries=1)
    await run_batched(otel, one)
    assert otel.value("grpcstream.batches.sent", grpcstream__side="server") == N
    assert otel.value("grpcstream.messages.sent", grpcstream__side="server") == N
    # Only coalescing queues report batches: the client's request stream has none.
    assert [attrs["grpcstream.side"] for attrs, _ in otel.points("grpcstream.batches.sent")] == [
        "server"
    ]


async def test_coalesced_batches_are_the_queue_s_own_batch_count(otel: Otel) -> None:
    ten = grpcstream.Batching(LogBatch, LogEntry, field="entries", max_entries=10)
    service = await run_batched(otel, ten)
    (stream,) = service.streams
    stats = stream.statistics()
    assert stats.sent == N
    assert N / 10 <= stats.batches < N  # the writer coalesced what queued up
    assert otel.value("grpcstream.batches.sent", grpcstream__side="server") == stats.batches
    assert otel.value("grpcstream.messages.sent", grpcstream__side="server") == N


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
    import gc

    gc.collect()
    assert otel.points("grpcstream.broadcast.entries") == []
    # Its name is free again.
    otel.telemetry.observe_broadcast(grpcstream.Broadcast(LogEntry), name="gone")
