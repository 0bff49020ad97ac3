"""Pitfalls: each hazard with raw grpc.aio, then the same job with grpcstream."""

from __future__ import annotations

import asyncio
import sys

import grpc
import grpc.aio

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest, StatusRequest

LogClient = StreamClient["logs_pb2_grpc.LogServiceAsyncStub"]


# --8<-- [start:raw_concurrent_writes]
async def raw_concurrent_writes(stub: logs_pb2_grpc.LogServiceAsyncStub) -> None:
    call = stub.UploadLogs(timeout=30)

    async def produce(worker: int) -> None:
        for n in range(100):
            await call.write(LogEntry(seq=n, message=f"w{worker}"))  # two writes in flight

    results = await asyncio.gather(*(produce(w) for w in range(4)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    codes = sorted({e.code().name for e in errors if isinstance(e, grpc.aio.AioRpcError)})
    print(f"raw: concurrent writes failed the call: {codes}")  # and hid its real status
    call.cancel()  # awaiting the call would hang until the deadline


# --8<-- [end:raw_concurrent_writes]


# --8<-- [start:concurrent_sends]
async def concurrent_sends(logs: LogClient) -> None:
    async with logs.client_stream(logs.stub.UploadLogs) as upload:

        async def produce(worker: int) -> None:
            for n in range(100):
                await upload.send(LogEntry(seq=n, message=f"w{worker}"))  # safe

        async with asyncio.TaskGroup() as group:
            for worker in range(4):
                group.create_task(produce(worker))
        summary = await upload.close_and_receive()
    print("grpcstream: 4 writers, received", summary.received)


# --8<-- [end:concurrent_sends]


# --8<-- [start:raw_unbounded]
async def raw_unbounded_queue(stub: logs_pb2_grpc.LogServiceAsyncStub) -> None:
    call = stub.UploadLogs(timeout=30)
    queue: asyncio.Queue[LogEntry | None] = asyncio.Queue()  # the usual fix: one writer...
    peak = 0

    async def writer() -> None:
        while (entry := await queue.get()) is not None:
            await call.write(entry)
        await call.done_writing()

    writing = asyncio.create_task(writer())
    for n in range(10_000):
        await queue.put(LogEntry(seq=n))  # ...but put() on an unbounded queue never waits
        peak = max(peak, queue.qsize())
    await queue.put(None)
    await writing
    print(f"raw: peak queued {peak}, received {(await call).received}")


# --8<-- [end:raw_unbounded]


# --8<-- [start:bounded]
async def bounded_queue(logs: LogClient) -> None:
    peak = 0
    async with logs.client_stream(logs.stub.UploadLogs) as upload:
        for n in range(10_000):
            await upload.send(LogEntry(seq=n))  # waits whenever 64 are queued
            peak = max(peak, upload.statistics().queued)
        summary = await upload.close_and_receive()
    print(f"grpcstream: peak queued <= 64: {peak <= 64}, received {summary.received}")


# --8<-- [end:bounded]


# --8<-- [start:raw_no_half_close]
async def raw_forgotten_half_close(stub: logs_pb2_grpc.LogServiceAsyncStub) -> None:
    call = stub.UploadLogs(timeout=0.5)
    for n in range(3):
        await call.write(LogEntry(seq=n))
    # Missing: await call.done_writing(). The server waits for more entries...
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        print("raw: without done_writing():", exc.code().name)  # ...until the deadline


# --8<-- [end:raw_no_half_close]


# --8<-- [start:half_close]
async def automatic_half_close(logs: LogClient) -> None:
    async with logs.client_stream(logs.stub.UploadLogs, timeout=0.5) as upload:
        for n in range(3):
            await upload.send(LogEntry(seq=n))
    # Leaving the block half-closed the stream and received the response.
    print("grpcstream: received", upload.response().received)


# --8<-- [end:half_close]


# --8<-- [start:raw_break]
async def raw_break(stub: logs_pb2_grpc.LogServiceAsyncStub) -> None:
    call = stub.StreamLogs(LogRequest(service="api", follow=True))
    async for _ in call:
        break
    print("raw: call still running after break:", not call.done())  # until GC, maybe
    call.cancel()


# --8<-- [end:raw_break]


# --8<-- [start:break]
async def break_is_safe(logs: LogClient) -> None:
    request = LogRequest(service="api", follow=True)
    async with logs.server_stream(logs.stub.StreamLogs, request) as entries:
        async for _ in entries:
            break
    print("grpcstream: call still running after the block:", not entries.done())


# --8<-- [end:break]


# --8<-- [start:raw_errors]
async def raw_errors(stub: logs_pb2_grpc.LogServiceAsyncStub) -> None:
    try:
        await stub.GetStatus(StatusRequest(service="missing"))
    except grpc.aio.AioRpcError as exc:  # one class for every status
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            print("raw: NOT_FOUND via exc.code()")
    call = stub.StreamLogs(LogRequest(service="api", limit=2))
    while (entry := await call.read()) is not grpc.aio.EOF:  # EOF is a sentinel value
        assert isinstance(entry, LogEntry)  # read() is typed as `object`: narrow it yourself
        print("raw: read", entry.seq)


# --8<-- [end:raw_errors]


# --8<-- [start:typed_errors]
async def typed_errors(logs: LogClient) -> None:
    try:
        await logs.unary(logs.stub.GetStatus, StatusRequest(service="missing"))
    except grpcstream.NotFound as exc:  # one class per status
        print("grpcstream: NotFound:", exc.details)
    request = LogRequest(service="api", limit=2)
    async with logs.server_stream(logs.stub.StreamLogs, request) as entries:
        async for entry in entries:  # ends with StopAsyncIteration; entry is a LogEntry
            print("grpcstream: read", entry.seq)


# --8<-- [end:typed_errors]


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        stub = logs_pb2_grpc.LogServiceStub(channel)
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=30.0)
        await raw_concurrent_writes(stub)
        await concurrent_sends(logs)
        await raw_unbounded_queue(stub)
        await bounded_queue(logs)
        await raw_forgotten_half_close(stub)
        await automatic_half_close(logs)
        await raw_break(stub)
        await break_is_safe(logs)
        await raw_errors(stub)
        await typed_errors(logs)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
