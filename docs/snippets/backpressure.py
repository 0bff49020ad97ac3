"""Backpressure: a bounded send queue, statistics(), and send_nowait() with WouldBlock."""

from __future__ import annotations

import asyncio
import sys

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry

LogClient = StreamClient["logs_pb2_grpc.LogServiceAsyncStub"]


# --8<-- [start:producers]
async def upload_from_many_tasks(logs: LogClient) -> int:
    async with logs.client_stream(logs.stub.UploadLogs, max_queued=16) as upload:

        async def produce(worker: int) -> None:
            for n in range(250):
                # Waits while 16 messages are queued: producers run at the writer's pace.
                await upload.send(LogEntry(seq=worker * 1000 + n, message=f"w{worker} {n}"))

        async with asyncio.TaskGroup() as group:
            for worker in range(4):
                group.create_task(produce(worker))
        stats = upload.statistics()
        assert stats.queued <= stats.max_size == 16
        summary = await upload.close_and_receive()
    return summary.received


# --8<-- [end:producers]


# --8<-- [start:nowait]
async def sample_without_waiting(logs: LogClient) -> None:
    dropped = 0
    async with logs.client_stream(logs.stub.UploadLogs, max_queued=8) as upload:
        for n in range(100):  # a burst faster than any network
            try:
                upload.send_nowait(LogEntry(seq=n, message=f"sample {n}"))
            except grpcstream.WouldBlock:
                dropped += 1  # telemetry: better a gap than a stalled producer
        print("statistics:", upload.statistics())
        summary = await upload.close_and_receive()
    print(f"sent {summary.received}, dropped {dropped}")


# --8<-- [end:nowait]


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=30.0)
        print("uploaded:", await upload_from_many_tasks(logs))
        await sample_without_waiting(logs)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
