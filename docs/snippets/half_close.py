"""Half-close: close_send(), close_and_receive(), and what leaving `async with` does."""

from __future__ import annotations

import asyncio
import sys

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import FollowRequest, LogEntry

LogClient = StreamClient["logs_pb2_grpc.LogServiceAsyncStub"]


# --8<-- [start:close_send]
async def close_send_rules(logs: LogClient) -> None:
    async with logs.client_stream(logs.stub.UploadLogs) as upload:
        await upload.send(LogEntry(seq=1, message="only line"))
        await upload.close_send()  # returns once "only line" is written
        await upload.close_send()  # idempotent: a no-op the second time
        try:
            await upload.send(LogEntry(seq=2))
        except grpcstream.StreamClosedError:
            print("send after close_send: StreamClosedError")
        summary = await upload.close_and_receive()
    print("received:", summary.received)


# --8<-- [end:close_send]


# --8<-- [start:client_exit]
async def upload_then_leave(logs: LogClient) -> None:
    async with logs.client_stream(logs.stub.UploadLogs) as upload:
        for seq in range(1, 4):
            await upload.send(LogEntry(seq=seq, message=f"line {seq}"))
        # No close_and_receive(): leaving the block half-closes and receives.
    print("response after the block:", upload.response().received)


# --8<-- [end:client_exit]


# --8<-- [start:bidi_read_to_end]
async def bidi_read_to_end(logs: LogClient) -> None:
    async with logs.bidi_stream(logs.stub.Follow) as follow:
        await follow.send(FollowRequest(service="api"))
        await follow.close_send()  # "no more requests": the server can finish
        messages = [entry.message async for entry in follow]
    print("read to the end:", messages, (await follow.code()).name)


# --8<-- [end:bidi_read_to_end]


# --8<-- [start:bidi_never_read]
async def bidi_never_read(logs: LogClient) -> None:
    async with logs.bidi_stream(logs.stub.Follow) as follow:
        await follow.send(FollowRequest(service="api"))
        # Never iterated: leaving half-closes, then waits for the server to finish.
    print("never read:", (await follow.code()).name)


# --8<-- [end:bidi_never_read]


# --8<-- [start:bidi_break]
async def bidi_break(logs: LogClient) -> None:
    async with logs.bidi_stream(logs.stub.Follow) as follow:
        await follow.send(FollowRequest(service="api"))
        async for _ in follow:
            break  # iteration abandoned: leaving the block cancels the RPC
    print("after break:", (await follow.code()).name)


# --8<-- [end:bidi_break]


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=30.0)
        await close_send_rules(logs)
        await upload_then_leave(logs)
        await bidi_read_to_end(logs)
        await bidi_never_read(logs)
        await bidi_break(logs)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
