"""Client guide: defaults, per-call overrides, status and metadata, closing the client."""

from __future__ import annotations

import asyncio
import sys

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest

LogClient = StreamClient["logs_pb2_grpc.LogServiceAsyncStub"]


# --8<-- [start:overrides]
async def first_entries(logs: LogClient) -> list[int]:
    request = LogRequest(service="api", limit=5)
    # timeout=None: no deadline for this call, whatever the client's default is.
    # metadata=: added to the client's metadata for this call only.
    async with logs.server_stream(
        logs.stub.StreamLogs, request, timeout=None, metadata=[("x-request-id", "42")]
    ) as entries:
        return [entry.seq async for entry in entries]


# --8<-- [end:overrides]


# --8<-- [start:status]
async def upload_and_inspect(logs: LogClient) -> None:
    async with logs.client_stream(logs.stub.UploadLogs) as upload:
        for seq in range(1, 11):
            await upload.send(LogEntry(seq=seq, message=f"line {seq}"))
        summary = await upload.close_and_receive()
    # After the call, the handle still answers questions about it.
    print("code:", (await upload.code()).name)  # OK
    print("trailers:", dict(await upload.trailing_metadata()))
    print("sha256:", summary.sha256[:12])


# --8<-- [end:status]


# --8<-- [start:aclose]
async def follow_until_closed(target: str) -> None:
    first = asyncio.Event()

    async def follow(logs: LogClient) -> None:
        request = LogRequest(service="api", follow=True)
        async with logs.server_stream(logs.stub.StreamLogs, request, timeout=None) as entries:
            async for _ in entries:
                first.set()

    async with grpcstream.connect(target) as channel:
        async with StreamClient(channel, logs_pb2_grpc.LogServiceStub) as logs:
            follower = asyncio.create_task(follow(logs))
            async with asyncio.timeout(10):
                await first.wait()
        # Leaving `async with StreamClient` cancelled every stream still open.
        try:
            await follower
        except grpcstream.Cancelled as exc:
            print("follower ended:", exc.code.name)


# --8<-- [end:aclose]


async def main(target: str = "127.0.0.1:50051") -> None:
    # --8<-- [start:client]
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(
            channel,
            logs_pb2_grpc.LogServiceStub,
            timeout=10.0,  # every call's default deadline, in seconds
            metadata=[("x-team", "dashboards")],  # sent with every call
        )
        # --8<-- [end:client]
        print("first entries:", await first_entries(logs))
        await upload_and_inspect(logs)
        await logs.aclose()
    await follow_until_closed(target)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
