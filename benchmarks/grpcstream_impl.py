"""The LogService benchmark written with grpcstream's public API only.

The server subclasses ``grpcstream.StreamServicer`` with the handler decorators and runs
in a ``grpcstream.StreamServer``; the client uses ``grpcstream.connect()`` and
``grpcstream.StreamClient``. Same messages as ``raw_impl``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpcstream
from grpcstream_demo import logs_pb2, logs_pb2_grpc

from .common import PRODUCERS_PREFIX, make_entry, make_follow_request, make_status, monotonic
from .scenarios import CHECK_EVERY, IdleStreams, ScenarioClient

__all__ = ["BenchLogService", "GrpcstreamClient", "start_grpcstream_server"]

_ENTRY = make_entry()
_STATUS = make_status()


class BenchLogService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """The benchmark servicer, written the way the docs tell users to write one."""

    @grpcstream.unary
    async def GetStatus(
        self, request: logs_pb2.StatusRequest, context: grpcstream.CallContext
    ) -> logs_pb2.Status:
        return _STATUS

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: logs_pb2.LogRequest, stream: grpcstream.ServerStream[logs_pb2.LogEntry]
    ) -> None:
        entry = _ENTRY
        if request.service.startswith(PRODUCERS_PREFIX):
            producers = int(request.service.removeprefix(PRODUCERS_PREFIX))
            share, extra = divmod(request.limit, producers)

            async def produce(count: int) -> None:
                for _ in range(count):
                    await stream.send(entry)

            async with asyncio.TaskGroup() as group:
                for index in range(producers):
                    group.create_task(produce(share + (1 if index < extra else 0)))
            return
        if request.follow:
            await stream.send(entry)
            await stream.closing.wait()  # idle until the client cancels or the server drains
            return
        for _ in range(request.limit):
            await stream.send(entry)

    @grpcstream.client_streaming
    async def UploadLogs(
        self,
        requests: grpcstream.RequestStream[logs_pb2.LogEntry],
        context: grpcstream.CallContext,
    ) -> logs_pb2.UploadSummary:
        received = 0
        async for _ in requests:
            received += 1
        return logs_pb2.UploadSummary(received=received)

    @grpcstream.bidi_streaming
    async def Follow(
        self,
        requests: grpcstream.RequestStream[logs_pb2.FollowRequest],
        stream: grpcstream.ServerStream[logs_pb2.LogEntry],
    ) -> None:
        entry = _ENTRY
        async for _ in requests:
            await stream.send(entry)


async def start_grpcstream_server(
    host: str = "127.0.0.1",
) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Start the grpcstream server; return its port and a coroutine function that stops it."""
    server = grpcstream.StreamServer(f"{host}:0")
    server.add(BenchLogService())
    await server.start()

    async def stop() -> None:
        await server.stop(grace=0)

    return server.port, stop


class GrpcstreamClient(ScenarioClient):
    """Runs each scenario through ``grpcstream.StreamClient``."""

    def __init__(self, target: str) -> None:
        self._channel = grpcstream.connect(target)
        self._client = grpcstream.StreamClient(
            self._channel, logs_pb2_grpc.LogServiceStub, timeout=None
        )

    async def connect(self) -> None:
        await asyncio.wait_for(self._channel.channel_ready(), 10.0)
        await self._client.unary(self._client.stub.GetStatus, logs_pb2.StatusRequest())

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._channel.close()

    async def server_stream(self, count: int, deadline: float) -> int:
        return await self._receive(logs_pb2.LogRequest(limit=count), deadline)

    async def _receive(self, request: logs_pb2.LogRequest, deadline: float) -> int:
        client = self._client
        received = 0
        async with client.server_stream(client.stub.StreamLogs, request) as entries:
            async for _ in entries:
                received += 1
                if received % CHECK_EVERY == 0 and monotonic() > deadline:
                    break  # leaving the block cancels the RPC
        return received

    async def client_stream(self, count: int, deadline: float) -> int:
        client = self._client
        entry = _ENTRY
        async with client.client_stream(client.stub.UploadLogs) as upload:
            for sent in range(1, count + 1):
                await upload.send(entry)
                if sent % CHECK_EVERY == 0 and monotonic() > deadline:
                    break
            summary = await upload.close_and_receive()
        return summary.received

    async def bidi_pipelined(self, count: int, deadline: float) -> int:
        client = self._client
        request = make_follow_request()
        received = 0
        async with client.bidi_stream(client.stub.Follow) as follow:

            async def write_all() -> None:
                for sent in range(1, count + 1):
                    await follow.send(request)
                    if sent % CHECK_EVERY == 0 and monotonic() > deadline:
                        break
                await follow.close_send()

            async with asyncio.TaskGroup() as group:
                group.create_task(write_all())
                async for _ in follow:
                    received += 1
        return received

    async def ping_pong(self, count: int, deadline: float) -> list[int]:
        client = self._client
        request = make_follow_request()
        latencies: list[int] = []
        clock = monotonic
        async with client.bidi_stream(client.stub.Follow) as follow:
            replies = aiter(follow)
            for _ in range(count):
                start = clock()
                await follow.send(request)
                await anext(replies)
                end = clock()
                latencies.append(round((end - start) * 1e9))
                if end > deadline:
                    break
            await follow.close_send()
            async for _ in replies:
                raise RuntimeError("unexpected reply after the last ping")
        return latencies

    async def unary(self, count: int, concurrency: int, deadline: float) -> int:
        client = self._client
        method = client.stub.GetStatus
        request = logs_pb2.StatusRequest(service="api-gateway")
        remaining = count

        async def worker() -> int:
            nonlocal remaining
            done = 0
            while remaining > 0:
                remaining -= 1
                await client.unary(method, request)
                done += 1
                if done % 64 == 0 and monotonic() > deadline:
                    break
            return done

        results = await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sum(results)

    async def producers(self, count: int, producers: int, deadline: float) -> int:
        request = logs_pb2.LogRequest(limit=count, service=f"{PRODUCERS_PREFIX}{producers}")
        return await self._receive(request, deadline)

    async def open_idle_streams(self, count: int, deadline: float) -> IdleStreams:
        client = self._client
        stack = contextlib.AsyncExitStack()
        request = logs_pb2.LogRequest(follow=True)
        opened = 0

        async def first_entry(entries: AsyncIterator[logs_pb2.LogEntry]) -> None:
            await anext(entries)

        try:
            waits: list[Awaitable[None]] = []
            for _ in range(count):
                entries = await stack.enter_async_context(
                    client.server_stream(client.stub.StreamLogs, request)
                )
                waits.append(first_entry(aiter(entries)))
                opened += 1
            remaining = max(1.0, deadline - monotonic())
            await asyncio.wait_for(asyncio.gather(*waits), remaining)
        except BaseException:
            await stack.aclose()
            raise
        return IdleStreams(opened=opened, close=stack.aclose)
