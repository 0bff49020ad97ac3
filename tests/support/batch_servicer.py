"""A LogBatchService whose handlers use ``batching=``, shared by the coalescing tests.

``StreamLogBatches`` sends entries ``after_seq+1 .. limit`` (``seq`` numbered). With
``follow`` set it paces them in bursts of uneven size (1, 2, 3, ... 7 entries, then a
short pause), so that batch boundaries on the wire are uneven. ``UploadLogBatches``
counts entries and checks their order; ``FollowBatches`` sends one entry per filter
received; ``EchoBatches`` sends every entry back.
"""

from __future__ import annotations

import asyncio

import grpcstream
from grpcstream_demo import logs_pb2, logs_pb2_grpc
from grpcstream_demo.logs_pb2 import FollowRequest, LogBatch, LogEntry, LogRequest, UploadSummary

LOG_BATCHES = grpcstream.Batching(LogBatch, LogEntry, field="entries")
PACE = 0.002
"""Seconds between two bursts of a paced (``follow``) stream."""


def entry(seq: int) -> LogEntry:
    """The log entry numbered ``seq`` (about 100 bytes serialized)."""
    return LogEntry(
        seq=seq, level=logs_pb2.INFO, service="checkout", message=f"order {seq} paid " + "x" * 60
    )


class BatchedLogService(grpcstream.StreamServicer, logs_pb2_grpc.LogBatchServiceServicer):
    """Every LogBatchService method, written entry by entry."""

    def __init__(self) -> None:
        self.uploaded: list[int] = []
        self.sent_statistics: list[grpcstream.SendQueueStatistics] = []

    @grpcstream.server_streaming(batching=LOG_BATCHES)
    async def StreamLogBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        seq = request.after_seq
        burst = 0
        while seq < request.limit:
            burst = burst % 7 + 1
            for _ in range(burst):
                if seq >= request.limit:
                    break
                seq += 1
                await stream.send(entry(seq))
            if request.follow:
                await asyncio.sleep(PACE)
        self.sent_statistics.append(stream.statistics())

    @grpcstream.client_streaming(batching=LOG_BATCHES)
    async def UploadLogBatches(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        seqs = [item.seq async for item in requests]
        self.uploaded = seqs
        in_order = seqs == sorted(seqs)
        return UploadSummary(
            received=requests.received,
            first_seq=seqs[0] if seqs else 0,
            last_seq=seqs[-1] if seqs else 0,
            sha256="in-order" if in_order else "out-of-order",
        )

    @grpcstream.bidi_streaming(batching=LOG_BATCHES)
    async def FollowBatches(
        self,
        requests: grpcstream.RequestStream[FollowRequest],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        seq = 0
        async for request in requests:
            seq += 1
            await stream.send(LogEntry(seq=seq, service=request.service))

    @grpcstream.bidi_streaming(batching=LOG_BATCHES)
    async def EchoBatches(
        self,
        requests: grpcstream.RequestStream[LogEntry],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        async for item in requests:
            await stream.send(item)
