"""A replica in its own process: a StreamServer whose Broadcast log is a Redis stream.

``python -m tests.redis_replica --host 127.0.0.2 --port N --redis URL --stream KEY``
serves ``LogService.StreamLogs`` (one entry per message, through ``Broadcast.serve``) and
``ReplicaLogs.TailBatches`` (the entries that are ready together, one message), prints
``PORT <n>`` once serving and ``STOPPED`` after the drain, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio

import grpcstream
from grpcstream_demo import logs_pb2_grpc, replica_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest
from grpcstream_demo.replica_pb2 import LogEntries

BATCH = 1_000


class ReplicaLogService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """StreamLogs: the documented one-line handler, resumable with ``after_seq``."""

    def __init__(self, log: grpcstream.Broadcast[LogEntry]) -> None:
        self.log = log

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        await self.log.serve(stream, after=request.after_seq, limit=request.limit or None)


class ReplicaBatchService(grpcstream.StreamServicer, replica_pb2_grpc.ReplicaLogsServicer):
    """TailBatches: entries that are ready together go out in one LogEntries message."""

    def __init__(self, log: grpcstream.Broadcast[LogEntry]) -> None:
        self.log = log

    @grpcstream.server_streaming
    async def TailBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntries]
    ) -> None:
        await tail_batches(self.log, request, stream)


async def tail_batches(
    log: grpcstream.Broadcast[LogEntry],
    request: LogRequest,
    stream: grpcstream.ServerStream[LogEntries],
) -> None:
    """Send the subscription's entries in batches; UNAVAILABLE on drain (resumable)."""
    remaining = request.limit or None
    closing = asyncio.ensure_future(stream.closing.wait())
    try:
        async with log.subscribe(after=request.after_seq) as sub:
            entries = aiter(sub)
            while remaining is None or remaining > 0:
                following = asyncio.ensure_future(anext(entries))
                await asyncio.wait({following, closing}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    raise grpcstream.Unavailable(f"draining; resume after {sub.position}")
                try:
                    batch = [following.result()]
                except StopAsyncIteration:
                    return
                limit = BATCH if remaining is None else min(BATCH, remaining)
                while len(batch) < limit and sub.statistics().lag > 0:
                    batch.append(await anext(entries))
                await stream.send(LogEntries(entries=batch))
                if remaining is not None:
                    remaining -= len(batch)
    finally:
        closing.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--max-entries", type=int, default=200_000)
    parser.add_argument("--grace", type=float, default=2.0)
    args = parser.parse_args()
    backend = grpcstream.RedisStreams(args.redis, args.stream, position_field="seq")
    async with grpcstream.Broadcast(LogEntry, max_entries=args.max_entries, backend=backend) as log:
        server = grpcstream.StreamServer(f"{args.host}:{args.port}", grace=args.grace)
        server.add(ReplicaLogService(log))  # type: ignore[abstract]  # StreamLogs only
        server.add(ReplicaBatchService(log))
        await server.start()
        print(f"PORT {server.port}", flush=True)
        await server.serve()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
