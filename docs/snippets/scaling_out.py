"""Scaling out: replicas that share one log through Redis Streams, a publisher in another
process, and a client that balances over the replicas and resumes across them."""

from __future__ import annotations

import asyncio

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest


# --8<-- [start:replica]
class LogService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    def __init__(self, log: grpcstream.Broadcast[LogEntry]) -> None:
        self.log = log

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        # The same one line as in one process: positions are valid on every replica.
        await self.log.serve(stream, after=request.after_seq)


async def replica(redis_url: str, host: str, target: asyncio.Future[str]) -> None:
    backend = grpcstream.RedisStreams(redis_url, "logs", position_field="seq")
    async with grpcstream.Broadcast(LogEntry, max_entries=100_000, backend=backend) as log:
        server = grpcstream.StreamServer(f"{host}:0")
        server.add(LogService(log))  # type: ignore[abstract]  # StreamLogs only
        await server.start()
        target.set_result(f"{host}:{server.port}")
        await server.serve()  # until SIGTERM (or stop()): drains, viewers resume elsewhere
        # --8<-- [end:replica]


async def publish(redis_url: str) -> None:
    # --8<-- [start:publisher]
    backend = grpcstream.RedisStreams(redis_url, "logs", tail=False)  # publishes only
    async with grpcstream.Broadcast(LogEntry, max_entries=100_000, backend=backend) as log:
        position = await log.apublish(LogEntry(service="api", message="first"))
        print("published at position", position)
        # Concurrent apublish() calls travel to Redis together, in order.
        await asyncio.gather(*(log.apublish(LogEntry(message=f"line {n}")) for n in range(5)))
    # --8<-- [end:publisher]


async def view(targets: list[str]) -> None:
    # --8<-- [start:client]
    async with grpcstream.connect(targets, load_balancing="round_robin") as channel:
        client = grpcstream.StreamClient(
            channel, logs_pb2_grpc.LogServiceStub, retry=grpcstream.RetryPolicy()
        )
        async with client.server_stream(
            client.stub.StreamLogs,
            LogRequest(after_seq=0),
            resume=lambda request, last: LogRequest(after_seq=last.seq),
        ) as entries:
            seqs = [(await anext(entries)).seq for _ in range(6)]
    print("viewer got", seqs)
    # --8<-- [end:client]


async def main(redis_url: str) -> None:
    """Two replicas on 127.0.0.1 and 127.0.0.2, one publisher, one viewer."""
    loop = asyncio.get_running_loop()
    targets: list[asyncio.Future[str]] = [loop.create_future() for _ in range(2)]
    servers = [
        asyncio.create_task(replica(redis_url, host, target))
        for host, target in zip(("127.0.0.1", "127.0.0.2"), targets, strict=True)
    ]
    try:
        addresses = await asyncio.gather(*targets)
        await publish(redis_url)
        await view(addresses)
    finally:
        for task in servers:
            task.cancel()
        await asyncio.gather(*servers, return_exceptions=True)
