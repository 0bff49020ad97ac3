"""The four RPC patterns, one function each, against the log service."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import FollowRequest, LogEntry, LogRequest, StatusRequest

LogClient = StreamClient["logs_pb2_grpc.LogServiceAsyncStub"]
"""StreamClient is generic over the stub: ``logs.stub.StreamLogs`` keeps its message types."""


# --8<-- [start:unary]
async def is_healthy(logs: LogClient, service: str) -> bool:
    """Unary: one request, one response."""
    try:
        status = await logs.unary(logs.stub.GetStatus, StatusRequest(service=service))
    except grpcstream.NotFound:
        return False
    return status.healthy


# --8<-- [end:unary]


# --8<-- [start:server_stream]
async def tail(logs: LogClient, service: str, after_seq: int, until_seq: int) -> list[int]:
    """Server streaming: one request, then entries as the server produces them."""
    seen: list[int] = []
    request = LogRequest(service=service, after_seq=after_seq, follow=True)
    async with logs.server_stream(logs.stub.StreamLogs, request) as entries:
        async for entry in entries:
            seen.append(entry.seq)
            if entry.seq >= until_seq:
                break  # we have what we need: leaving the block cancels the RPC
    return seen


# --8<-- [end:server_stream]


# --8<-- [start:client_stream]
async def upload(logs: LogClient, lines: Iterable[str]) -> int:
    """Client streaming: many requests, then one response."""
    async with logs.client_stream(logs.stub.UploadLogs) as stream:
        for seq, line in enumerate(lines, start=1):
            await stream.send(LogEntry(seq=seq, message=line))  # waits while the queue is full
        summary = await stream.close_and_receive()  # half-close, then the response
    return summary.received


# --8<-- [end:client_stream]


# --8<-- [start:bidi]
async def follow(logs: LogClient, services: list[str]) -> list[str]:
    """Bidirectional: send filters and read entries at the same time."""
    seen: list[str] = []
    async with logs.bidi_stream(logs.stub.Follow) as stream:

        async def send_filters() -> None:
            for service in services:
                await stream.send(FollowRequest(service=service))
            await stream.close_send()  # no more filters: the server may finish

        stream.spawn(send_filters())  # a producer task that ends with the stream
        async for entry in stream:  # meanwhile, this task reads
            seen.append(entry.message)
    return seen


# --8<-- [end:bidi]


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=30.0)
        print("api healthy:", await is_healthy(logs, "api"))
        print("missing healthy:", await is_healthy(logs, "missing"))
        print("tail:", await tail(logs, "api", after_seq=97, until_seq=103))
        print("uploaded:", await upload(logs, (f"line {n}" for n in range(1000))))
        print("followed:", await follow(logs, ["api", "db"]))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
