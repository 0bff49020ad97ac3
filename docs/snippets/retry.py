"""Retry and resume: RetryPolicy on a unary call, and a server stream resumed after a failure."""

from __future__ import annotations

import asyncio

import grpcstream
from docs.snippets.server import LogService
from grpcstream import RetryEvent, RetryPolicy
from grpcstream.testing import serve
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest, Status, StatusRequest


class FlakyLogService(LogService):
    """Fails the first two status calls, and the first stream after three entries."""

    def __init__(self) -> None:
        self.status_calls = 0
        self.streams = 0

    @grpcstream.unary
    async def GetStatus(self, request: StatusRequest, context: grpcstream.CallContext) -> Status:
        self.status_calls += 1
        if self.status_calls <= 2:
            raise grpcstream.Unavailable("warming up")
        return Status(service=request.service, healthy=True)

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        self.streams += 1
        for seq in range(request.after_seq + 1, 7):
            await stream.send(LogEntry(seq=seq, service=request.service))
            if self.streams == 1 and seq == 3:
                raise grpcstream.Unavailable("connection lost")  # after partial delivery


# --8<-- [start:policy]
def log_retry(event: RetryEvent) -> None:
    print(f"retry: attempt {event.attempt} failed with {event.code.name}")


POLICY = RetryPolicy(
    max_attempts=5,  # attempts in all, including the first
    initial_backoff=0.01,  # waits 0.005-0.01 s, 0.01-0.02 s, 0.02-0.04 s... (equal jitter)
    deadline=10.0,  # one budget for every attempt and wait together
    on_retry=log_retry,
)
# --8<-- [end:policy]


async def main() -> None:
    async with serve(FlakyLogService()) as running:
        channel = running.channel
        # --8<-- [start:calls]
        logs = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, retry=POLICY)
        status = await logs.unary(logs.stub.GetStatus, StatusRequest(service="api"))
        print("healthy:", status.healthy)

        async with logs.server_stream(
            logs.stub.StreamLogs,
            LogRequest(service="api"),
            resume=lambda request, last: LogRequest(service=request.service, after_seq=last.seq),
        ) as entries:
            print("entries:", [entry.seq async for entry in entries])  # no gap, no duplicate
        # --8<-- [end:calls]
        await logs.aclose()


if __name__ == "__main__":
    asyncio.run(main())
