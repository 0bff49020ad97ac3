"""A LogService written with plain grpc.aio: the server every client snippet talks to.

Run it with ``python -m docs.snippets.log_server`` and point the client snippets at
``127.0.0.1:50051``. The tests start it on an ephemeral port instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import (
    INFO,
    FollowRequest,
    LogEntry,
    LogRequest,
    Status,
    StatusRequest,
    UploadSummary,
)

HISTORY = 100
"""How many entries the synthetic log holds before ``follow=True`` starts waiting."""

Context = grpc.aio.ServicerContext[object, object]


# --8<-- [start:service]
class LogService(logs_pb2_grpc.LogServiceServicer):
    """A synthetic log: entries 1..HISTORY exist, later ones appear when following."""

    async def GetStatus(self, request: StatusRequest, context: Context) -> Status:
        if request.service == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no service called 'missing'")
        return Status(service=request.service, healthy=True, last_seq=HISTORY, entries=HISTORY)

    async def StreamLogs(self, request: LogRequest, context: Context) -> AsyncIterator[LogEntry]:
        seq, sent = request.after_seq, 0
        while not request.limit or sent < request.limit:
            seq += 1
            if seq > HISTORY:
                if not request.follow:
                    return  # the end of the history: the client sees the end of the stream
                await asyncio.sleep(0.01)  # pacing for "new" entries, not synchronisation
            yield LogEntry(seq=seq, level=INFO, service=request.service, message=f"line {seq}")
            sent += 1

    async def UploadLogs(
        self, request_iterator: AsyncIterator[LogEntry], context: Context
    ) -> UploadSummary:
        summary, digest = UploadSummary(), hashlib.sha256()
        async for entry in request_iterator:  # ends when the client half-closes
            if summary.received == 0:
                summary.first_seq = entry.seq
            summary.received += 1
            summary.bytes += entry.ByteSize()
            summary.last_seq = entry.seq
            digest.update(entry.message.encode())
        summary.sha256 = digest.hexdigest()
        context.set_trailing_metadata((("x-entries", str(summary.received)),))
        return summary

    async def Follow(
        self, request_iterator: AsyncIterator[FollowRequest], context: Context
    ) -> AsyncIterator[LogEntry]:
        seq = 0
        async for follow in request_iterator:  # each request replaces the filter
            for _ in range(3):
                seq += 1
                yield LogEntry(seq=seq, service=follow.service, message=f"{follow.service} {seq}")
        # The client half-closed: returning ends the call with OK.


# --8<-- [end:service]


@contextlib.asynccontextmanager
async def running(address: str = "127.0.0.1:0") -> AsyncIterator[str]:
    """Serve LogService on ``address`` (port 0: an ephemeral port); yield the target."""
    server = grpc.aio.server()
    logs_pb2_grpc.add_LogServiceServicer_to_server(LogService(), server)
    port = server.add_insecure_port(address)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def main() -> None:
    """Serve on 127.0.0.1:50051 until interrupted."""
    async with running("127.0.0.1:50051") as target:
        print(f"serving LogService on {target}")
        await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
