"""Fan-out and replay: a Broadcast log, its subscribers, the policies, and serve() over gRPC."""

from __future__ import annotations

import asyncio

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


async def replay() -> None:
    # --8<-- [start:replay]
    log = grpcstream.Broadcast(LogEntry, max_entries=1000, key=lambda entry: entry.seq)
    for seq in range(1, 101):
        log.publish(LogEntry(seq=seq, message=f"line {seq}"))  # never waits

    async with log.subscribe(after=97) as sub:  # the entries after 97, then live ones
        log.publish(LogEntry(seq=101, message="line 101"))
        print("after 97:", [(await anext(sub)).seq for _ in range(4)])
        print("position:", sub.position)  # resume with after= this

    async with log.subscribe(last=3) as sub:  # the dashboard's first screen, then live
        print("last 3:", [(await anext(sub)).seq for _ in range(3)])
    # --8<-- [end:replay]
    print(log.statistics())


async def out_of_range() -> None:
    # --8<-- [start:out-of-range]
    log = grpcstream.Broadcast(LogEntry, max_entries=10)
    for _ in range(100):
        log.publish(LogEntry())  # positions 1..100; the log holds 91..100
    try:
        async with log.subscribe(after=42):
            pass
    except grpcstream.OutOfRange as exc:
        print("after=42:", exc.details)
    async with log.subscribe(after=42, on_gap="oldest") as sub:
        first = await anext(sub)
        print("on_gap='oldest': starts at", log.statistics().oldest, "dropped", sub.dropped)
    # --8<-- [end:out-of-range]
    del first


async def policies() -> None:
    # --8<-- [start:policies]
    log = grpcstream.Broadcast(LogEntry, max_entries=1000)
    async with (
        log.subscribe(policy="drop_oldest", max_lag=10) as skipper,
        log.subscribe(policy="disconnect", max_lag=10) as strict,
    ):
        for _ in range(50):
            log.publish(LogEntry())  # neither subscriber reads meanwhile
        entry = await anext(skipper)
        print("drop_oldest: resumes at", skipper.position, "dropped", skipper.dropped)
        try:
            await anext(strict)
        except grpcstream.ResourceExhausted as exc:
            print("disconnect:", exc.details)

    async with log.subscribe(policy="block", max_lag=10) as careful:
        for _ in range(10):
            log.publish(LogEntry())
        try:
            log.publish(LogEntry())  # would put `careful` 11 behind
        except grpcstream.WouldBlock:
            print("block: publish() raises WouldBlock; apublish() waits")
        publishing = asyncio.create_task(log.apublish(LogEntry()))
        await anext(careful)  # one read makes room
        print("block: apublish() returned position", await publishing)
    # --8<-- [end:policies]
    del entry


# --8<-- [start:serve]
class LogService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    def __init__(self, log: grpcstream.Broadcast[LogEntry]) -> None:
        self.log = log

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        # Replay after `after_seq`, then follow; backpressure, drain and client-gone
        # handled. OUT_OF_RANGE if after_seq is older than the log holds.
        await self.log.serve(stream, after=request.after_seq, limit=request.limit or None)

    # --8<-- [end:serve]

    @grpcstream.unary
    async def GetStatus(self, request: StatusRequest, context: grpcstream.CallContext) -> Status:
        stats = self.log.statistics()
        return Status(service=request.service, healthy=True, last_seq=stats.newest or 0)

    @grpcstream.client_streaming
    async def UploadLogs(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        summary = UploadSummary()
        async for entry in requests:
            summary.received += 1
            self.log.publish(entry)  # uploads fan out to every follower
        return summary

    @grpcstream.bidi_streaming
    async def Follow(
        self,
        requests: grpcstream.RequestStream[FollowRequest],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        raise grpcstream.Unimplemented("see StreamLogs")


async def over_grpc() -> None:
    # --8<-- [start:client]
    log = grpcstream.Broadcast(LogEntry, max_entries=10_000, key=lambda entry: entry.seq)
    async with serve(LogService(log)) as running:
        logs = running.client(logs_pb2_grpc.LogServiceStub)
        request = LogRequest(after_seq=0, limit=6)
        async with logs.server_stream(
            logs.stub.StreamLogs,
            request,
            retry=grpcstream.RetryPolicy(),
            resume=lambda req, last: LogRequest(after_seq=last.seq, limit=req.limit),
        ) as entries:
            for seq in range(1, 7):
                log.publish(LogEntry(seq=seq))
            print("over gRPC:", [entry.seq async for entry in entries])
    # --8<-- [end:client]


async def main() -> None:
    await replay()
    await out_of_range()
    await policies()
    await over_grpc()


if __name__ == "__main__":
    asyncio.run(main())
