"""With ``batching=``, mypy sees the entry type, not the batch type, on both sides.

mypy --strict checks this file: each ``assert_type`` pins what a batched call or handler
exposes, and each ``type: ignore`` must match an error mypy really reports
(``warn_unused_ignores``). The test also runs every call against a real server.
"""

from __future__ import annotations

from typing import assert_type

import pytest

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import FollowRequest, LogBatch, LogEntry, LogRequest, UploadSummary
from tests.support.batch_servicer import LOG_BATCHES, BatchedLogService
from tests.support.servers import serving


def test_a_batching_declaration_carries_both_types() -> None:
    assert_type(LOG_BATCHES, grpcstream.Batching[LogBatch, LogEntry])
    assert_type(LOG_BATCHES.pack([LogEntry()]), LogBatch)
    assert_type(LOG_BATCHES.unpack(LogBatch()), list[LogEntry])


class WrongEntries(grpcstream.StreamServicer, logs_pb2_grpc.LogBatchServiceServicer):
    @grpcstream.server_streaming(batching=LOG_BATCHES)  # type: ignore[arg-type]
    async def StreamLogBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogBatch]
    ) -> None:  # declares the batch type where entries are sent
        await stream.send(LogBatch())


async def test_batched_calls_and_handlers_are_typed_by_entry() -> None:
    handler = BatchedLogService.StreamLogBatches
    assert callable(handler)
    async with serving(BatchedLogService()) as (_, target), grpcstream.connect(target) as channel:
        client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogBatchServiceStub, timeout=30)
        stub = client.stub
        async with client.server_stream(
            stub.StreamLogBatches, LogRequest(limit=3), batching=LOG_BATCHES
        ) as entries:
            assert_type(entries, grpcstream.ResponseStream[LogEntry])
            async for entry in entries:
                assert_type(entry, LogEntry)
        async with client.client_stream(stub.UploadLogBatches, batching=LOG_BATCHES) as upload:
            assert_type(upload, grpcstream.ClientStream[LogEntry, UploadSummary])
            await upload.send(LogEntry(seq=1))
            with pytest.raises(TypeError, match="sends LogEntry entries"):
                await upload.send(LogBatch())  # type: ignore[arg-type]
            assert_type(upload.statistics().mean_batch_size, float)
            summary = await upload.close_and_receive()
        assert summary.received == 1  # the misplaced LogBatch was refused, nothing sent
        async with client.bidi_stream(stub.EchoBatches, batching=LOG_BATCHES) as echo:
            assert_type(echo, grpcstream.BidiStream[LogEntry, LogEntry])
            await echo.close_send()
        async with client.bidi_stream(stub.FollowBatches, batching=LOG_BATCHES) as follow:
            assert_type(follow, grpcstream.BidiStream[FollowRequest, LogEntry])
            await follow.close_send()
        async with client.server_stream(stub.StreamLogBatches, LogRequest(limit=1)) as batches:
            async for batch in batches:
                assert_type(batch, LogBatch)  # without batching= the wire type is seen
