"""Server guide: LogService written with StreamServicer, run in-process with grpcstream.testing."""

from __future__ import annotations

import asyncio
import hashlib

import grpcstream
from grpcstream.testing import serve
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import (
    FollowRequest,
    LogEntry,
    LogRequest,
    Status,
    StatusRequest,
    UploadSummary,
)

HISTORY = 100


# --8<-- [start:service]
class LogService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """The log service: one handler per pattern."""

    @grpcstream.unary
    async def GetStatus(self, request: StatusRequest, context: grpcstream.CallContext) -> Status:
        if not request.service:
            raise grpcstream.InvalidArgument("service is required")  # the client's status
        return Status(service=request.service, healthy=not context.closing.is_set())

    # --8<-- [start:stream_logs]
    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        seq = request.after_seq
        while not stream.closing.is_set():  # draining: return, the client resumes elsewhere
            seq += 1
            if seq > HISTORY and not request.follow:
                stream.complete()  # the natural end: OK even if a drain began meanwhile
                return  # the RPC ends with OK, after everything sent is written
            await stream.send(LogEntry(seq=seq, service=request.service))  # may wait
            if seq > HISTORY:
                await asyncio.sleep(0.01)  # pacing for "new" entries

    # --8<-- [end:stream_logs]

    @grpcstream.client_streaming
    async def UploadLogs(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        summary, digest = UploadSummary(), hashlib.sha256()
        async for entry in requests:  # ends at the client's half-close
            summary.received += 1
            summary.last_seq = entry.seq
            digest.update(entry.message.encode())
        summary.sha256 = digest.hexdigest()
        return summary

    @grpcstream.bidi_streaming
    async def Follow(
        self,
        requests: grpcstream.RequestStream[FollowRequest],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        seq = 0
        async for follow in requests:
            for _ in range(3):
                seq += 1
                await stream.send(LogEntry(seq=seq, service=follow.service))


# --8<-- [end:service]


# --8<-- [start:run]
async def run_forever() -> None:
    server = grpcstream.StreamServer("127.0.0.1:50051", grace=10.0, health=True)
    server.add(LogService())  # finds add_LogServiceServicer_to_server by itself
    await server.serve()  # returns after SIGINT/SIGTERM, once drained


# --8<-- [end:run]


async def main() -> None:
    # --8<-- [start:testing]
    async with serve(LogService()) as running:  # StreamServer on 127.0.0.1:0
        logs = running.client(logs_pb2_grpc.LogServiceStub, timeout=10.0)
        status = await logs.unary(logs.stub.GetStatus, StatusRequest(service="api"))
        print("healthy:", status.healthy)
        try:
            await logs.unary(logs.stub.GetStatus, StatusRequest())
        except grpcstream.InvalidArgument as exc:
            print("InvalidArgument:", exc.details)
        request = LogRequest(service="api", after_seq=95)
        async with logs.server_stream(logs.stub.StreamLogs, request) as entries:
            print("entries:", [entry.seq async for entry in entries])
        # --8<-- [end:testing]
        async with logs.client_stream(logs.stub.UploadLogs) as upload:
            for seq in range(1, 51):
                await upload.send(LogEntry(seq=seq, message=f"line {seq}"))
        print("uploaded:", upload.response().received)
        async with logs.bidi_stream(logs.stub.Follow) as follow:
            await follow.send(FollowRequest(service="db"))
            await follow.close_send()
            print("followed:", [entry.seq async for entry in follow])


if __name__ == "__main__":
    asyncio.run(run_forever())
