"""``python -m examples.logs.demo --firehose``: entries/s of one stream, batched and not.

Starts the log server, then reads its firehose (fresh entries, as fast as they come) for
a few seconds per method: ``LogService.StreamLogs`` sends one ``LogEntry`` per gRPC
message, ``LogBatchService.StreamLogBatches`` the same entries coalesced into
``LogBatch`` messages. The client code is the same apart from ``batching=``. Prints one
line per method, such as ``batched (StreamLogBatches): 151,000 entries/s``.
"""

from __future__ import annotations

import time

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogRequest

from .batches import FIREHOSE, LOG_BATCHES


async def measure(target: str, seconds: float) -> tuple[float, float]:
    """Entries/s of the per-message and the batched firehose, ``seconds`` each."""
    async with grpcstream.connect(target) as channel:
        logs = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub)
        batches = grpcstream.StreamClient(channel, logs_pb2_grpc.LogBatchServiceStub)
        request = LogRequest(service=FIREHOSE)  # limit 0: until we leave

        start, received = time.perf_counter(), 0
        async with logs.server_stream(logs.stub.StreamLogs, request) as entries:
            async for _ in entries:
                received += 1
                if received % 256 == 0 and time.perf_counter() - start > seconds:
                    break  # leaving the block cancels the call
        per_message = received / (time.perf_counter() - start)

        start, received = time.perf_counter(), 0
        async with batches.server_stream(
            batches.stub.StreamLogBatches, request, batching=LOG_BATCHES
        ) as entries:
            async for _ in entries:  # the same LogEntry messages, one by one
                received += 1
                if received % 256 == 0 and time.perf_counter() - start > seconds:
                    break
        batched = received / (time.perf_counter() - start)
    return per_message, batched


def report(per_message: float, batched: float) -> str:
    """The lines the demo prints."""
    return (
        f"per-message (StreamLogs): {per_message:,.0f} entries/s\n"
        f"batched (StreamLogBatches): {batched:,.0f} entries/s "
        f"({batched / max(per_message, 1.0):.1f}x)"
    )
