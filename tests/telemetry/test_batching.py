"""Telemetry of coalescing (``batching=``), read back from the OpenTelemetry SDK's reader.

A real server whose handler coalesces; each test asserts the exact numbers the known run
produces, against the send queue's own ``statistics()``.
"""

from __future__ import annotations

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogBatch, LogEntry, LogRequest
from tests.support.batch_servicer import entry
from tests.support.servers import WAIT, serving, wait_until
from tests.telemetry.otel import Otel

N = 300


class Coalescing(grpcstream.StreamServicer, logs_pb2_grpc.LogBatchServiceServicer):
    """StreamLogBatches queues entries 1..limit as fast as it can; keeps its streams."""

    def __init__(self) -> None:
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

    return Service()  # type: ignore[abstract]  # StreamLogBatches only


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
