"""Quickstart: the four call styles against the log service."""

from __future__ import annotations

import asyncio
import sys

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo.logs_pb2 import FollowRequest, LogEntry, LogRequest, StatusRequest
from grpcstream_demo.logs_pb2_grpc import LogServiceStub


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(channel, LogServiceStub, timeout=30.0)

        # Unary: one request, one response.
        status = await logs.unary(logs.stub.GetStatus, StatusRequest(service="api"))
        print("healthy:", status.healthy)

        # Server streaming: one request, many responses.
        async with logs.server_stream(logs.stub.StreamLogs, LogRequest(service="api")) as entries:
            async for entry in entries:  # typed LogEntry; ends at the server's OK
                if entry.seq >= 3:
                    break  # leaving the block cancels the RPC
        print("last seq read:", entry.seq)

        # Client streaming: many requests, one response.
        async with logs.client_stream(logs.stub.UploadLogs) as upload:
            for n in range(100):
                await upload.send(LogEntry(seq=n, message=f"line {n}"))  # may wait: backpressure
            summary = await upload.close_and_receive()  # half-close, then the response
        print("uploaded:", summary.received)

        # Bidirectional: both sides send whenever they like.
        async with logs.bidi_stream(logs.stub.Follow) as follow:
            await follow.send(FollowRequest(service="api"))
            await follow.close_send()  # no more filters
            async for entry in follow:
                print("followed:", entry.message)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
