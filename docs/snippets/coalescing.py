"""Coalescing: a batched method used entry by entry, and what a plain gRPC peer sees."""

from __future__ import annotations

import asyncio

import grpc.aio

import grpcstream
from grpcstream.testing import serve
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import (
    FollowRequest,
    LogBatch,
    LogEntry,
    LogRequest,
    UploadSummary,
)

# --8<-- [start:declare]
# message LogBatch { repeated LogEntry entries = 1; }
LOG_BATCHES = grpcstream.Batching(LogBatch, LogEntry, field="entries")
# --8<-- [end:declare]


# --8<-- [start:server]
class LogBatchService(grpcstream.StreamServicer, logs_pb2_grpc.LogBatchServiceServicer):
    @grpcstream.server_streaming(batching=LOG_BATCHES)
    async def StreamLogBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        for seq in range(request.after_seq + 1, request.limit + 1):
            await stream.send(LogEntry(seq=seq, message=f"line {seq}"))  # one entry

    @grpcstream.client_streaming(batching=LOG_BATCHES)
    async def UploadLogBatches(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        async for _entry in requests:  # entries, whatever batches they came in
            pass
        return UploadSummary(received=requests.received)

    # --8<-- [end:server]

    @grpcstream.bidi_streaming(batching=LOG_BATCHES)
    async def FollowBatches(
        self,
        requests: grpcstream.RequestStream[FollowRequest],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        async for request in requests:
            await stream.send(LogEntry(service=request.service))

    @grpcstream.bidi_streaming(batching=LOG_BATCHES)
    async def EchoBatches(
        self,
        requests: grpcstream.RequestStream[LogEntry],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        async for entry in requests:
            await stream.send(entry)


LogBatchClient = grpcstream.StreamClient["logs_pb2_grpc.LogBatchServiceAsyncStub"]


async def client_side(logs: LogBatchClient) -> None:
    # --8<-- [start:client]
    request = LogRequest(limit=1000)
    async with logs.server_stream(
        logs.stub.StreamLogBatches, request, batching=LOG_BATCHES
    ) as entries:
        seqs = [entry.seq async for entry in entries]  # LogEntry, one at a time
    print("received:", len(seqs), "entries, last", seqs[-1])

    async with logs.client_stream(logs.stub.UploadLogBatches, batching=LOG_BATCHES) as upload:
        for seq in range(1, 5001):
            await upload.send(LogEntry(seq=seq))  # queued; the writer packs batches
        summary = await upload.close_and_receive()
        statistics = upload.statistics()
    print("uploaded:", summary.received)
    print(f"batches: {statistics.batches} for {statistics.sent} entries")
    # --8<-- [end:client]


async def plain_peer(target: str) -> None:
    # --8<-- [start:interop]
    async with grpc.aio.insecure_channel(target) as channel:  # no grpcstream here
        stub = logs_pb2_grpc.LogBatchServiceStub(channel)
        entries = 0
        async for batch in stub.StreamLogBatches(LogRequest(limit=1000)):
            entries += len(batch.entries)  # ordinary LogBatch messages
        print("plain client read:", entries, "entries")
        batches = [LogBatch(entries=[LogEntry(seq=1), LogEntry(seq=2)]), LogBatch()]
        summary = await stub.UploadLogBatches(iter(batches))
        print("plain client sent batches, the handler read:", summary.received, "entries")
    # --8<-- [end:interop]


async def main() -> None:
    async with serve(LogBatchService()) as running:
        await client_side(running.client(logs_pb2_grpc.LogBatchServiceStub, timeout=10.0))
        await plain_peer(running.target)


if __name__ == "__main__":
    asyncio.run(main())
