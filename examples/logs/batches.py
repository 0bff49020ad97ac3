"""The batched log service: the log streams with entries coalesced on the wire.

``LogBatchService`` (``protos/grpcstream_demo/logs.proto``) carries ``LogBatch`` messages,
but every handler here sends and reads single ``LogEntry`` messages: ``batching=`` makes
the send queue's writer pack whatever queued up into one batch per write, and the reader
hand out the entries one by one. A client in another language sees plain ``LogBatch``
messages.

``service="firehose"`` in a ``LogRequest`` (here and in ``LogService.StreamLogs``) ignores
the log source and sends ``limit`` fresh entries as fast as the client takes them: that
is what ``python -m examples.logs.demo --firehose`` measures.
"""

from __future__ import annotations

import contextlib
import time

import grpcstream
from grpcstream_demo import logs_pb2, logs_pb2_grpc
from grpcstream_demo.logs_pb2 import (
    FollowRequest,
    LogBatch,
    LogEntry,
    LogRequest,
    UploadSummary,
)

from .source import LogSource, level_filter

LOG_BATCHES = grpcstream.Batching(LogBatch, LogEntry, field="entries")
"""``LogBatch`` carries ``LogEntry`` entries in its ``entries`` field."""

FIREHOSE = "firehose"
_FIREHOSE_MESSAGE = "GET /v1/orders/8421 200 12.4ms user=7f3a9c request_id=0b9e5d4a-1c2f-4e7b"


def firehose_entry(seq: int) -> LogEntry:
    """A fresh ~130-byte entry, stamped now."""
    entry = LogEntry(seq=seq, level=logs_pb2.INFO, service="api-gateway", message=_FIREHOSE_MESSAGE)
    entry.timestamp.FromNanoseconds(time.time_ns())
    return entry


async def firehose(stream: grpcstream.ServerStream[LogEntry], limit: int) -> None:
    """Send ``limit`` fresh entries (0: until the client leaves) as fast as they go."""
    seq = 0
    send = stream.send
    while limit == 0 or seq < limit:
        seq += 1
        await send(firehose_entry(seq))  # BrokenStreamError once the client leaves


class LogBatchService(grpcstream.StreamServicer, logs_pb2_grpc.LogBatchServiceServicer):
    """Serves the entries of one :class:`LogSource`, batched on the wire.

    Args:
        source: where entries come from.
    """

    def __init__(self, source: LogSource) -> None:
        self.source = source
        self.uploaded = 0

    @grpcstream.server_streaming(batching=LOG_BATCHES)
    async def StreamLogBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        """Like ``LogService.StreamLogs``: entries after ``after_seq`` that pass the filter."""
        if request.service == FIREHOSE:
            await firehose(stream, request.limit)
            return
        matches = level_filter(request.service, request.min_level)
        sent = 0
        entries = self.source.entries(request.after_seq, request.follow, stream.closing)
        async with contextlib.aclosing(entries):
            async for entry in entries:
                if not matches(entry):
                    continue
                await stream.send(entry)  # one entry; the writer batches what queues up
                sent += 1
                if sent == request.limit:
                    return

    @grpcstream.client_streaming(batching=LOG_BATCHES)
    async def UploadLogBatches(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        """Count the entries a client sends, whatever batches they came in."""
        summary = UploadSummary()
        async for entry in requests:
            if summary.received == 0:
                summary.first_seq = entry.seq
            summary.received += 1
            summary.last_seq = entry.seq
        self.uploaded += summary.received
        return summary

    @grpcstream.bidi_streaming(batching=LOG_BATCHES)
    async def FollowBatches(
        self,
        requests: grpcstream.RequestStream[FollowRequest],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        """For each filter received, the newest entries (up to 100) that pass it."""
        async for request in requests:
            matches = level_filter(request.service, request.min_level)
            last = self.source.last_seq()
            entries = self.source.entries(max(0, last - 100), False, stream.closing)
            async with contextlib.aclosing(entries):
                async for entry in entries:
                    if matches(entry):
                        await stream.send(entry)

    @grpcstream.bidi_streaming(batching=LOG_BATCHES)
    async def EchoBatches(
        self,
        requests: grpcstream.RequestStream[LogEntry],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        """Every entry received, sent back (batched both ways)."""
        async for entry in requests:
            await stream.send(entry)
