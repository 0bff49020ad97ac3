"""Graceful shutdown: stop() (what SIGTERM triggers) drains an open stream, then refuses calls."""

from __future__ import annotations

import asyncio

import grpcstream
from docs.snippets.server import LogService
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogRequest, StatusRequest


async def main() -> None:
    # --8<-- [start:drain]
    server = grpcstream.StreamServer("127.0.0.1:0", grace=5.0)
    server.add(LogService())
    await server.start()
    async with grpcstream.connect(f"127.0.0.1:{server.port}") as channel:
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=10.0)
        request = LogRequest(service="api", follow=True)  # never ends on its own
        async with logs.server_stream(logs.stub.StreamLogs, request) as entries:
            await anext(entries)  # the stream is open
            stopping = asyncio.create_task(server.stop())  # what SIGTERM does in serve()
            try:
                async for _ in entries:
                    pass  # the handler sees `closing` and returns
            except grpcstream.Unavailable as error:  # with resume=, a retry continues
                print("open stream ended:", error.code.name, f"({error.details})")
        await stopping
        try:
            await logs.unary(logs.stub.GetStatus, StatusRequest(service="api"))
        except grpcstream.Unavailable:
            print("new call after the drain: UNAVAILABLE")
    # --8<-- [end:drain]


if __name__ == "__main__":
    asyncio.run(main())
