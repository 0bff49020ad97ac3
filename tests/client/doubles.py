"""Small servers and test doubles that several client test modules share.

Each servicer does one thing, named by its class; the fixtures in ``conftest.py`` serve them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import WAIT, Context, ServerProcess

BIG = b"x" * 256 * 1024
"""A payload large enough that a few of them fill the HTTP/2 flow-control windows."""


class Echo(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Echoes every request (once) and records what the streaming calls sent."""

    def __init__(self) -> None:
        self.requests_seen: list[Req] = []

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        return Reply(value=request.value, seq=request.seq)

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.send(Reply(value=request.value, seq=request.seq))

    @grpcstream.client_streaming
    async def ClientStream(
        self, requests: grpcstream.RequestStream[Req], context: grpcstream.CallContext
    ) -> Reply:
        count = 0
        async for request in requests:
            self.requests_seen.append(request)
            count += 1
        return Reply(seq=count)

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        async for request in requests:
            self.requests_seen.append(request)
            await stream.send(Reply(seq=request.seq, value=request.value))


async def never_reads(requests: AsyncIterator[Req], context: Context) -> Reply:
    """A plain grpc.aio client-streaming handler that never reads: the client's writes back up."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class Sleeps:
    """An injected ``RetryPolicy(sleep=...)``: records each backoff and returns at once.

    With ``gate`` set to an event, each sleep waits (bounded) until the test sets it.
    """

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), WAIT)


STARTUP = 60.0
"""Bound for a child server process to print its port: a cold interpreter importing grpc.

On a loaded 2-core machine this alone has taken over 10 s (``WAIT``). No test measures it.
"""


class PatientServerProcess(ServerProcess):
    """``ServerProcess`` that allows ``STARTUP`` for each (re)start; other waits keep ``WAIT``."""

    async def wait_line(self, prefix: str, timeout: float = WAIT) -> str:
        if prefix == "PORT ":  # what start() waits for
            timeout = max(timeout, STARTUP)
        return await super().wait_line(prefix, timeout)


@contextlib.asynccontextmanager
async def patient_server_process() -> AsyncIterator[PatientServerProcess]:
    """A started ``PatientServerProcess``, killed at the end."""
    process = PatientServerProcess()
    await process.start()
    try:
        yield process
    finally:
        await process.kill()
