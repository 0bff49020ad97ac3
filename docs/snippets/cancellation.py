"""Cancellation and deadlines: timeout=, task cancellation, cancel(), asyncio.timeout()."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest

LogClient = StreamClient["logs_pb2_grpc.LogServiceAsyncStub"]

FOREVER = LogRequest(service="api", follow=True)
"""A request whose stream never ends on its own."""


# --8<-- [start:deadline]
async def read_with_deadline(logs: LogClient) -> None:
    try:
        async with logs.server_stream(logs.stub.StreamLogs, FOREVER, timeout=0.5) as entries:
            async for _ in entries:
                pass  # the server would go on for ever; the deadline ends it
    except grpcstream.DeadlineExceeded as exc:
        print("after timeout=0.5:", exc.code.name)


# --8<-- [end:deadline]


# --8<-- [start:task]
async def cancel_the_task(logs: LogClient) -> None:
    first = asyncio.Event()
    handle: grpcstream.ResponseStream[LogEntry] | None = None

    async def reader() -> None:
        nonlocal handle
        async with logs.server_stream(logs.stub.StreamLogs, FOREVER) as entries:
            handle = entries
            async for _ in entries:
                first.set()

    task = asyncio.create_task(reader())
    async with asyncio.timeout(10):
        await first.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):  # grpcstream re-raises it as-is
        await task
    assert handle is not None
    print("after task.cancel():", (await handle.code()).name)


# --8<-- [end:task]


# --8<-- [start:cancel]
async def stop_from_elsewhere(logs: LogClient) -> None:
    async with logs.server_stream(logs.stub.StreamLogs, FOREVER) as entries:
        try:
            async for entry in entries:
                if entry.seq == 10:
                    entries.cancel()  # e.g. a "stop" button; safe from any task
        except grpcstream.Cancelled as exc:
            print("after cancel():", exc.code.name)


# --8<-- [end:cancel]


# --8<-- [start:local_timeout]
async def local_time_limit(logs: LogClient) -> None:
    try:
        async with asyncio.timeout(0.5):
            async with logs.server_stream(logs.stub.StreamLogs, FOREVER) as entries:
                async for _ in entries:
                    pass
    except TimeoutError:
        print("asyncio.timeout expired; the RPC was cancelled")


# --8<-- [end:local_timeout]


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=None)
        await read_with_deadline(logs)
        await cancel_the_task(logs)
        await stop_from_elsewhere(logs)
        await local_time_limit(logs)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
