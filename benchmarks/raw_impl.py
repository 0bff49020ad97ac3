"""The baseline: the LogService benchmark written with plain grpc.aio, the idiomatic way.

Server streaming yields from an async generator, client streaming and bidi use the
``call.write()`` / ``call.read()`` API on the client, and the servers iterate their
request iterator. These are the fastest idiomatic forms we measured; the same messages
are sent as on the grpcstream side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from grpcstream_demo import logs_pb2, logs_pb2_grpc

from .common import PRODUCERS_PREFIX, make_entry, make_follow_request, make_status, monotonic
from .scenarios import CHECK_EVERY, IdleStreams, ScenarioClient

__all__ = ["RawClient", "RawLogService", "start_raw_server"]

_ENTRY = make_entry()
_STATUS = make_status()


class RawLogService(logs_pb2_grpc.LogServiceServicer):
    """Plain grpc.aio servicer: the baseline the grpcstream servicer is compared with."""

    async def GetStatus(
        self, request: logs_pb2.StatusRequest, context: aio.ServicerContext[object, object]
    ) -> logs_pb2.Status:
        return _STATUS

    async def StreamLogs(
        self, request: logs_pb2.LogRequest, context: aio.ServicerContext[object, object]
    ) -> AsyncIterator[logs_pb2.LogEntry]:
        if request.service.startswith(PRODUCERS_PREFIX):
            # Concurrent writers are the hazard grpcstream removes; raw grpc.aio cannot do it.
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "raw grpc.aio has one writer")
        if request.follow:
            yield _ENTRY
            await asyncio.Event().wait()  # idle until the client cancels
        entry = _ENTRY
        for _ in range(request.limit):
            yield entry

    async def UploadLogs(
        self,
        request_iterator: AsyncIterator[logs_pb2.LogEntry],
        context: aio.ServicerContext[object, object],
    ) -> logs_pb2.UploadSummary:
        received = 0
        async for _ in request_iterator:
            received += 1
        return logs_pb2.UploadSummary(received=received)

    async def Follow(
        self,
        request_iterator: AsyncIterator[logs_pb2.FollowRequest],
        context: aio.ServicerContext[object, object],
    ) -> AsyncIterator[logs_pb2.LogEntry]:
        entry = _ENTRY
        async for _ in request_iterator:
            yield entry


async def start_raw_server(host: str = "127.0.0.1") -> tuple[aio.Server, int]:
    """Start the raw server on an ephemeral port; return it and the bound port."""
    server = aio.server()
    logs_pb2_grpc.add_LogServiceServicer_to_server(RawLogService(), server)
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    return server, port


class RawClient(ScenarioClient):
    """Runs each scenario with a plain grpc.aio channel and stub."""

    def __init__(self, target: str) -> None:
        self._channel = aio.insecure_channel(target)
        self._stub = logs_pb2_grpc.LogServiceStub(self._channel)

    async def connect(self) -> None:
        await asyncio.wait_for(self._channel.channel_ready(), 10.0)
        await self._stub.GetStatus(logs_pb2.StatusRequest())

    async def aclose(self) -> None:
        await self._channel.close()

    async def server_stream(self, count: int, deadline: float) -> int:
        call = self._stub.StreamLogs(logs_pb2.LogRequest(limit=count))
        received = 0
        async for _ in call:
            received += 1
            if received % CHECK_EVERY == 0 and monotonic() > deadline:
                call.cancel()
                break
        return received

    async def client_stream(self, count: int, deadline: float) -> int:
        call = self._stub.UploadLogs()
        entry = _ENTRY
        for sent in range(1, count + 1):
            await call.write(entry)
            if sent % CHECK_EVERY == 0 and monotonic() > deadline:
                break
        await call.done_writing()
        summary = await call
        return summary.received

    async def bidi_pipelined(self, count: int, deadline: float) -> int:
        call = self._stub.Follow()
        request = make_follow_request()

        async def write_all() -> None:
            for sent in range(1, count + 1):
                await call.write(request)
                if sent % CHECK_EVERY == 0 and monotonic() > deadline:
                    break
            await call.done_writing()

        writer = asyncio.create_task(write_all())
        received = 0
        try:
            async for _ in call:
                received += 1
        finally:
            await writer
        return received

    async def ping_pong(self, count: int, deadline: float) -> list[int]:
        call = self._stub.Follow()
        request = make_follow_request()
        latencies: list[int] = []
        clock = monotonic
        for _ in range(count):
            start = clock()
            await call.write(request)
            reply = await call.read()
            if reply is aio.EOF:
                raise RuntimeError("server ended the ping-pong stream early")
            end = clock()
            latencies.append(round((end - start) * 1e9))
            if end > deadline:
                break
        await call.done_writing()
        assert await call.read() is aio.EOF
        return latencies

    async def unary(self, count: int, concurrency: int, deadline: float) -> int:
        stub = self._stub
        request = logs_pb2.StatusRequest(service="api-gateway")
        remaining = count

        async def worker() -> int:
            nonlocal remaining
            done = 0
            while remaining > 0:
                remaining -= 1
                await stub.GetStatus(request)
                done += 1
                if done % 64 == 0 and monotonic() > deadline:
                    break
            return done

        results = await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sum(results)

    async def producers(self, count: int, producers: int, deadline: float) -> int:
        raise NotImplementedError("raw grpc.aio cannot write from several tasks on one stream")

    async def open_idle_streams(self, count: int, deadline: float) -> IdleStreams:
        calls: list[aio.UnaryStreamCall[logs_pb2.LogRequest, logs_pb2.LogEntry]] = []
        request = logs_pb2.LogRequest(follow=True)

        async def open_one() -> None:
            call = self._stub.StreamLogs(request)
            calls.append(call)
            first = await call.read()
            if first is aio.EOF:
                raise RuntimeError("idle stream ended early")

        remaining = deadline - monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(open_one() for _ in range(count))), max(1.0, remaining)
        )

        async def close_all() -> None:
            for call in calls:
                call.cancel()

        return IdleStreams(opened=len(calls), close=close_all)
