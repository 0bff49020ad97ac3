"""Coalescing (``batching=``): entries on the API, batches on the wire, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import (
    FollowRequest,
    LogBatch,
    LogEntry,
    LogRequest,
    Status,
    UploadSummary,
)
from tests.support.batch_servicer import LOG_BATCHES, BatchedLogService, entry
from tests.support.servers import WAIT, ServerProcess, serving, wait_until

BatchClient = grpcstream.StreamClient["logs_pb2_grpc.LogBatchServiceAsyncStub"]


def _client(target: str) -> tuple[grpc.aio.Channel, BatchClient]:
    channel = grpcstream.connect(target)
    return channel, grpcstream.StreamClient(
        channel, logs_pb2_grpc.LogBatchServiceStub, timeout=WAIT * 3
    )


async def _raw_batches(target: str, request: LogRequest) -> list[LogBatch]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = logs_pb2_grpc.LogBatchServiceStub(channel)
        return [batch async for batch in stub.StreamLogBatches(request, timeout=WAIT)]


def megabyte_entry(seq: int) -> LogEntry:
    """A log entry of about 1 MiB: three make a batch that takes a while on the wire."""
    return LogEntry(seq=seq, message="x" * 1024 * 1024)


class RecordsBatches(logs_pb2_grpc.LogBatchServiceServicer):
    """A plain grpc.aio ``UploadLogBatches`` that records the seqs of each batch it receives."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def UploadLogBatches(
        self, request_iterator: AsyncIterator[LogBatch], context: object
    ) -> UploadSummary:
        async for batch in request_iterator:
            self.batches.append([item.seq for item in batch.entries])
        return UploadSummary(received=sum(len(batch) for batch in self.batches))


class QueuesEverything(BatchedLogService):
    """``StreamLogBatches`` queues entries 1 .. ``limit`` with ``send_nowait`` where it can,
    so that batches are as full as they get; records its statistics when it returns."""

    @grpcstream.server_streaming(batching=LOG_BATCHES)
    async def StreamLogBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        for seq in range(1, request.limit + 1):
            try:
                stream.send_nowait(entry(seq))
            except grpcstream.WouldBlock:
                await stream.send(entry(seq))
        self.sent_statistics.append(stream.statistics())


def test_a_batch_field_must_be_repeated_entries() -> None:
    with pytest.raises(ValueError, match="not repeated"):
        grpcstream.Batching(LogEntry, Timestamp, field="timestamp")
    with pytest.raises(ValueError, match=r"holds grpcstream\.demo\.logs\.v1\.LogEntry, not"):
        grpcstream.Batching(LogBatch, Status, field="entries")
    with pytest.raises(ValueError, match="has no field 'items'"):
        grpcstream.Batching(LogBatch, LogEntry, field="items")
    with pytest.raises(TypeError, match="protobuf message class"):
        grpcstream.Batching(LogBatch, dict, field="entries")
    with pytest.raises(ValueError, match="max_entries"):
        grpcstream.Batching(LogBatch, LogEntry, max_entries=0)
    with pytest.raises(ValueError, match="linger"):
        grpcstream.Batching(LogBatch, LogEntry, linger=-1)


def test_a_handler_batching_a_method_without_batches_is_refused_at_registration() -> None:
    class Wrong(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
        @grpcstream.server_streaming(batching=LOG_BATCHES)
        async def StreamLogs(  # type: ignore[override]
            self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
        ) -> None:
            await stream.send(LogEntry())

    server = grpcstream.StreamServer("127.0.0.1:0")
    with pytest.raises(grpcstream.UsageError, match="StreamLogs: its response type is not"):
        server.add(Wrong())  # type: ignore[abstract]
    with pytest.raises(TypeError, match=r"grpcstream\.Batching"):
        grpcstream.server_streaming(batching="entries")  # type: ignore[call-overload]


async def test_a_call_batching_a_method_without_batches_is_refused() -> None:
    async with grpcstream.connect("127.0.0.1:1") as channel:
        client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub)
        with pytest.raises(grpcstream.UsageError, match="response type is not LogBatch"):
            client.server_stream(client.stub.StreamLogs, LogRequest(), batching=LOG_BATCHES)  # type: ignore[misc]
        with pytest.raises(grpcstream.UsageError, match="request type is not LogBatch"):
            client.client_stream(client.stub.UploadLogs, batching=LOG_BATCHES)  # type: ignore[misc]
        with pytest.raises(grpcstream.UsageError, match="in either direction"):
            client.bidi_stream(client.stub.Follow, batching=LOG_BATCHES)  # type: ignore[misc]


async def test_the_writer_packs_everything_queued_up_to_max_entries_in_order() -> None:
    packing = grpcstream.Batching(LogBatch, LogEntry, max_entries=4, max_queued=100)
    recorder = RecordsBatches()  # type: ignore[abstract]
    async with serving(recorder) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.client_stream(
                client.stub.UploadLogBatches, batching=packing
            ) as upload:
                for seq in range(1, 11):
                    upload.send_nowait(entry(seq))  # the writer has not run: all ten wait
                summary = await upload.close_and_receive()
                stats = upload.statistics()
    assert summary.received == 10
    assert recorder.batches == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert (stats.sent, stats.batches, stats.queued) == (10, 3, 0)
    assert stats.mean_batch_size == 10 / 3


async def test_the_batch_on_the_wire_does_not_count_against_the_bound() -> None:
    bound = grpcstream.Batching(LogBatch, LogEntry, max_queued=3)
    outcome: dict[str, object] = {}
    checked = asyncio.Event()

    class FillsTwice(BatchedLogService):
        @grpcstream.server_streaming(batching=bound)
        async def StreamLogBatches(
            self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
        ) -> None:
            for seq in range(1, 4):
                stream.send_nowait(megabyte_entry(seq))  # the queue is full
            # The writer takes all three as one batch: while it is written, room for
            # three more appears (no await below lets that write finish).
            async with asyncio.timeout(WAIT):
                while True:
                    try:
                        stream.send_nowait(megabyte_entry(4))
                        break
                    except grpcstream.WouldBlock:
                        await asyncio.sleep(0)  # let the writer run: a status, not a timer
            for seq in range(5, 7):
                stream.send_nowait(megabyte_entry(seq))
            try:
                stream.send_nowait(megabyte_entry(7))
            except grpcstream.WouldBlock as exc:
                outcome["seventh"] = exc
            outcome["queued"] = stream.statistics().queued
            checked.set()

    async with (
        serving(FillsTwice()) as (_, target),
        grpc.aio.insecure_channel(target) as channel,
    ):
        call = logs_pb2_grpc.LogBatchServiceStub(channel).StreamLogBatches(
            LogRequest(), timeout=WAIT
        )
        await asyncio.wait_for(checked.wait(), WAIT)
        seqs = [item.seq async for batch in call for item in batch.entries]
    assert isinstance(outcome["seventh"], grpcstream.WouldBlock)
    assert outcome["queued"] == 6  # three on the wire, three waiting
    assert seqs == [1, 2, 3, 4, 5, 6]


async def test_linger_waits_for_more_entries_but_close_flushes_at_once() -> None:
    lingering = grpcstream.Batching(LogBatch, LogEntry, linger=60.0)
    recorder = RecordsBatches()  # type: ignore[abstract]
    async with serving(recorder) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.client_stream(
                client.stub.UploadLogBatches, batching=lingering
            ) as upload:
                upload.send_nowait(entry(1))
                await asyncio.sleep(0)  # the writer starts lingering with one entry
                upload.send_nowait(entry(2))  # a new entry does not cut the linger short
                await asyncio.sleep(0)
                assert upload.statistics().batches == 0
                summary = await asyncio.wait_for(upload.close_and_receive(), WAIT)
    assert summary.received == 2
    assert recorder.batches == [[1, 2]]


async def test_server_stream_delivers_every_entry_in_order_in_fewer_batches() -> None:
    service = QueuesEverything()
    async with serving(service) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            request = LogRequest(limit=5000)
            async with client.server_stream(
                client.stub.StreamLogBatches, request, batching=LOG_BATCHES
            ) as entries:
                seqs = [item.seq async for item in entries]
                assert entries.received == 5000
    assert seqs == list(range(1, 5001))
    stats = service.sent_statistics[-1]  # when the handler returned: the rest was queued
    assert stats.sent + stats.queued == 5000
    assert stats.batches < stats.sent / 4  # the writer coalesced what queued up
    assert stats.mean_batch_size == stats.sent / stats.batches


async def test_plain_grpc_aio_client_reads_ordinary_batches_from_a_coalescing_server() -> None:
    async with serving(QueuesEverything()) as (_, target):
        batches = await _raw_batches(target, LogRequest(limit=3000))
    seqs = [item.seq for batch in batches for item in batch.entries]
    assert seqs == list(range(1, 3001))
    assert len(batches) < 3000
    assert all(len(batch.entries) >= 1 for batch in batches)
    assert max(len(batch.entries) for batch in batches) <= LOG_BATCHES.max_entries


async def test_at_light_load_every_batch_holds_one_entry_and_goes_out_at_once() -> None:
    # The client acknowledges each entry before the next is sent: nothing ever queues up.
    received: asyncio.Queue[int] = asyncio.Queue()

    class OneByOne(BatchedLogService):
        @grpcstream.server_streaming(batching=LOG_BATCHES)
        async def StreamLogBatches(
            self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
        ) -> None:
            for seq in range(1, 21):
                await stream.send(entry(seq))
                assert await asyncio.wait_for(received.get(), WAIT) == seq
            stats = stream.statistics()  # the last write may not have returned yet
            assert stats.sent + stats.queued == 20
            assert stats.batches == stats.sent

    async with serving(OneByOne()) as (_, target), grpc.aio.insecure_channel(target) as channel:
        sizes = []
        async for batch in logs_pb2_grpc.LogBatchServiceStub(channel).StreamLogBatches(
            LogRequest(), timeout=WAIT
        ):
            sizes.append(len(batch.entries))
            received.put_nowait(batch.entries[0].seq)
    assert sizes == [1] * 20


async def test_max_bytes_bounds_every_batch_and_an_oversize_entry_fails_only_its_send() -> None:
    small = grpcstream.Batching(LogBatch, LogEntry, max_bytes=1000)
    outcome: list[str] = []

    class Bounded(BatchedLogService):
        @grpcstream.server_streaming(batching=small)
        async def StreamLogBatches(
            self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
        ) -> None:
            for seq in range(1, 201):
                stream.send_nowait(entry(seq))
            try:
                await stream.send(LogEntry(seq=999, message="x" * 2000))
            except ValueError as exc:
                outcome.append(str(exc))
            with pytest.raises(TypeError, match="sends LogEntry entries"):
                await stream.send(Status())  # type: ignore[arg-type]
            await stream.send(entry(201))

    async with serving(Bounded()) as (_, target):
        batches = await _raw_batches(target, LogRequest())
    assert [item.seq for batch in batches for item in batch.entries] == list(range(1, 202))
    assert all(batch.ByteSize() <= 1000 for batch in batches)
    assert max(batch.ByteSize() for batch in batches) > 1000 - 2 * entry(200).ByteSize()
    assert outcome
    assert "does not fit a batch of at most 1000 bytes" in outcome[0]


async def test_without_max_bytes_entries_are_not_measured_and_batches_follow_max_entries() -> None:
    unmeasured = grpcstream.Batching(LogBatch, LogEntry, max_bytes=None, max_entries=50)

    class Unbounded(BatchedLogService):
        @grpcstream.server_streaming(batching=unmeasured)
        async def StreamLogBatches(
            self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
        ) -> None:
            for seq in range(1, 51):
                stream.send_nowait(LogEntry(seq=seq, message="x" * 2000))
            with pytest.raises(TypeError):
                stream.send_nowait(Status())  # type: ignore[arg-type]

    async with serving(Unbounded()) as (_, target):
        batches = await _raw_batches(target, LogRequest())
    assert [len(batch.entries) for batch in batches] == [50]


async def test_max_entries_bounds_every_batch() -> None:
    few = grpcstream.Batching(LogBatch, LogEntry, max_entries=7, max_queued=100)

    class Bounded(BatchedLogService):
        @grpcstream.server_streaming(batching=few)
        async def StreamLogBatches(
            self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
        ) -> None:
            for seq in range(1, 101):
                stream.send_nowait(entry(seq))

    async with serving(Bounded()) as (_, target):
        batches = await _raw_batches(target, LogRequest())
    assert [len(batch.entries) for batch in batches] == [7] * 14 + [2]


async def test_client_stream_sends_entries_in_batches_and_the_handler_reads_entries() -> None:
    service = BatchedLogService()
    async with serving(service) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.client_stream(
                client.stub.UploadLogBatches, batching=LOG_BATCHES
            ) as upload:
                for seq in range(1, 4001):
                    await upload.send(entry(seq))
                summary = await upload.close_and_receive()
                stats = upload.statistics()
    assert (summary.received, summary.first_seq, summary.last_seq) == (4000, 1, 4000)
    assert summary.sha256 == "in-order"
    assert service.uploaded == list(range(1, 4001))
    assert (stats.sent, stats.queued) == (4000, 0)
    assert stats.batches < 4000 / 4


async def test_plain_grpc_aio_client_sends_batches_to_a_handler_reading_entries() -> None:
    sizes = [1, 5, 0, 250, 3, 1000, 17]  # uneven, with an empty batch in the middle
    batches, seq = [], 0
    for size in sizes:
        batches.append(LogBatch(entries=[entry(seq + i + 1) for i in range(size)]))
        seq += size
    service = BatchedLogService()
    async with serving(service) as (_, target), grpc.aio.insecure_channel(target) as channel:
        stub = logs_pb2_grpc.LogBatchServiceStub(channel)

        async def requests() -> AsyncIterator[LogBatch]:
            for batch in batches:
                yield batch

        summary: UploadSummary = await stub.UploadLogBatches(requests(), timeout=WAIT)
    assert summary.received == seq
    assert service.uploaded == list(range(1, seq + 1))


async def test_backpressure_counts_entries() -> None:
    bounded = grpcstream.Batching(LogBatch, LogEntry, max_queued=10)
    async with serving(BatchedLogService()) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.client_stream(
                client.stub.UploadLogBatches, batching=bounded
            ) as upload:
                for seq in range(1, 11):
                    upload.send_nowait(entry(seq))  # the writer has not run yet
                assert upload.statistics().queued == 10
                with pytest.raises(grpcstream.WouldBlock):
                    upload.send_nowait(entry(11))
                await upload.send(entry(11))  # waits for room, then queues
                summary = await upload.close_and_receive()
    assert summary.received == 11


async def test_half_close_flushes_the_partial_batch_without_waiting_for_linger() -> None:
    lingering = grpcstream.Batching(LogBatch, LogEntry, linger=60.0)
    async with serving(BatchedLogService()) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.client_stream(
                client.stub.UploadLogBatches, batching=lingering
            ) as upload:
                for seq in range(1, 4):
                    await upload.send(entry(seq))
                await asyncio.sleep(0)  # the writer starts lingering on a 3-entry batch
                summary = await asyncio.wait_for(upload.close_and_receive(), WAIT)
                assert upload.statistics().batches == 1
    assert summary.received == 3


async def test_cancelling_a_blocked_sender_loses_nothing_already_accepted() -> None:
    bounded = grpcstream.Batching(LogBatch, LogEntry, max_queued=50)
    service = BatchedLogService()
    async with serving(service) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.client_stream(
                client.stub.UploadLogBatches, batching=bounded
            ) as upload:
                accepted = 0

                async def produce() -> None:
                    nonlocal accepted
                    for seq in range(1, 1_000_000):
                        await upload.send(entry(seq))
                        accepted = seq

                producer = asyncio.create_task(produce())
                await wait_until(lambda: accepted >= 500)
                producer.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await producer
                summary = await upload.close_and_receive()
    assert summary.received == accepted
    assert service.uploaded == list(range(1, accepted + 1))


async def test_bidi_batched_both_ways_echoes_every_entry() -> None:
    async with serving(BatchedLogService()) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.bidi_stream(client.stub.EchoBatches, batching=LOG_BATCHES) as echo:

                async def send_all() -> None:
                    for seq in range(1, 3001):
                        await echo.send(entry(seq))
                    await echo.close_send()

                echo.spawn(send_all())
                seqs = [item.seq async for item in echo]
                stats = echo.statistics()
    assert seqs == list(range(1, 3001))
    assert stats.batches < 3000


async def test_bidi_batches_only_the_direction_whose_type_is_the_batch() -> None:
    async with serving(BatchedLogService()) as (_, target):
        channel, client = _client(target)
        async with channel, client:
            async with client.bidi_stream(
                client.stub.FollowBatches, batching=LOG_BATCHES
            ) as follow:
                for index in range(100):
                    await follow.send(FollowRequest(service=f"s{index}"))
                await follow.close_send()
                got = [(item.seq, item.service) async for item in follow]
                assert follow.statistics().batches == follow.statistics().sent == 100
    assert got == [(index + 1, f"s{index}") for index in range(100)]


@pytest.mark.slow
async def test_resume_after_sigkill_loses_and_duplicates_no_entry_with_uneven_batches() -> None:
    total = 4000
    process = ServerProcess(0, "tests.support.subprocess_batch_server")
    target = await process.start()
    lasts: list[LogEntry] = []

    def resume(request: LogRequest, last: LogEntry) -> LogRequest:
        lasts.append(last)
        return LogRequest(after_seq=last.seq, limit=request.limit, follow=True)

    policy = grpcstream.RetryPolicy(max_attempts=50, initial_backoff=0.05, max_backoff=0.2)
    seqs: list[int] = []
    try:
        channel, client = _client(target)
        async with channel, client:
            async with client.server_stream(
                client.stub.StreamLogBatches,
                LogRequest(limit=total, follow=True),
                batching=LOG_BATCHES,
                retry=policy,
                resume=resume,
            ) as entries:
                async for item in entries:
                    seqs.append(item.seq)
                    if len(seqs) in (700, 2100):
                        await process.kill()  # mid-batch for the client: the rest is buffered
                        await process.start()  # same port
    finally:
        await process.kill()
    assert seqs == list(range(1, total + 1))
    assert len(lasts) >= 2
    assert all(isinstance(last, LogEntry) for last in lasts)
