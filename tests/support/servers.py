"""Shared test helpers: real grpc.aio servers on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

import grpcstream
import grpcstream.testing
from grpcstream_demo import dummy_pb2, dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "grpcstream.demo.testing.v1.DummyService"
WAIT = 10.0
"""Upper bound for any wait in a test: generous for a loaded 2-core machine."""

Context = grpc.aio.ServicerContext[Req, Reply]
UnaryHandler = Callable[[Req, Context], Awaitable[Reply]]
ServerStreamHandler = Callable[[Req, Context], Awaitable[None]]
ClientStreamHandler = Callable[[AsyncIterator[Req], Context], Awaitable[Reply]]
BidiHandler = Callable[[AsyncIterator[Req], Context], Awaitable[None]]
DummyClient = grpcstream.StreamClient["dummy_pb2_grpc.DummyServiceAsyncStub"]
OpenDummyClient = Callable[..., Awaitable[DummyClient]]
"""The type of the ``open_dummy_client`` fixture (tests/conftest.py)."""
OpenRawChannel = Callable[[str], Awaitable[grpc.aio.Channel]]
"""The type of the ``open_raw_channel`` fixture (tests/conftest.py)."""


@contextlib.asynccontextmanager
async def raw_server(
    *,
    unary: UnaryHandler | None = None,
    server_stream: ServerStreamHandler | None = None,
    client_stream: ClientStreamHandler | None = None,
    bidi: BidiHandler | None = None,
    options: Sequence[tuple[str, int | str]] = (),
) -> AsyncIterator[str]:
    """Serve the given plain grpc.aio handlers for DummyService; yield the target."""
    handlers: dict[str, grpc.RpcMethodHandler[Req, Reply]] = {}
    decode, encode = dummy_pb2.Req.FromString, dummy_pb2.Reply.SerializeToString
    if unary is not None:
        handlers["Unary"] = grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=decode, response_serializer=encode
        )
    if server_stream is not None:
        handlers["ServerStream"] = grpc.unary_stream_rpc_method_handler(
            server_stream, request_deserializer=decode, response_serializer=encode
        )
    if client_stream is not None:
        handlers["ClientStream"] = grpc.stream_unary_rpc_method_handler(
            client_stream, request_deserializer=decode, response_serializer=encode
        )
    if bidi is not None:
        handlers["Bidi"] = grpc.stream_stream_rpc_method_handler(
            bidi, request_deserializer=decode, response_serializer=encode
        )
    server = grpc.aio.server(options=list(options))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def dummy_client(target: str, *, timeout: float | None = None) -> AsyncIterator[DummyClient]:
    """A StreamClient for DummyService on a fresh channel; closed afterwards."""
    async with (
        grpcstream.connect(target) as channel,
        grpcstream.StreamClient(
            channel, dummy_pb2_grpc.DummyServiceStub, timeout=timeout
        ) as client,
    ):
        yield client


async def wait_for(event: asyncio.Event, timeout: float = WAIT) -> None:
    """Wait for ``event``; fail the test (not hang) if it does not happen in time."""
    await asyncio.wait_for(event.wait(), timeout)


def grpcstream_tasks() -> set[asyncio.Task[object]]:
    """Tasks grpcstream started that are still alive (writer and producer tasks)."""
    return {
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_name().startswith("grpcstream")
    }


class ServerProcess:
    """``tests.support.subprocess_server`` as a child process to SIGKILL and restart."""

    def __init__(
        self, port: int = 0, module: str = "tests.support.subprocess_server", *args: str
    ) -> None:
        self.port = port
        self.module = module
        self.args = args
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        """Start (or restart on the same port) and return the target once it serves."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            "--port",
            str(self.port),
            *self.args,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        line = await self.wait_line("PORT ")
        self.port = int(line.split()[1])
        return f"127.0.0.1:{self.port}"

    async def wait_line(self, prefix: str, timeout: float = WAIT) -> str:
        """Wait for the next stdout line starting with ``prefix`` and return it."""
        assert self._process is not None
        assert self._process.stdout is not None
        stdout = self._process.stdout

        async def find() -> str:
            while True:
                raw = await stdout.readline()
                if not raw:
                    raise RuntimeError(f"server exited before printing {prefix!r}")
                line = raw.decode().strip()
                if line.startswith(prefix):
                    return line

        return await asyncio.wait_for(find(), timeout)

    @property
    def process(self) -> asyncio.subprocess.Process:
        """The running child process."""
        assert self._process is not None
        return self._process

    async def kill(self) -> None:
        """SIGKILL the server and wait until it is gone."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await asyncio.wait_for(self._process.wait(), WAIT)


@contextlib.asynccontextmanager
async def server_process() -> AsyncIterator[ServerProcess]:
    """A started ``ServerProcess``, killed at the end."""
    process = ServerProcess()
    await process.start()
    try:
        yield process
    finally:
        await process.kill()


@contextlib.asynccontextmanager
async def serving(
    *servicers: object, **server_options: Any
) -> AsyncIterator[tuple[grpcstream.StreamServer, str]]:
    """An in-process StreamServer on 127.0.0.1:0 with ``servicers``; yields it and its target.

    Built on ``grpcstream.testing.serve``, the helper the library offers its users.
    """
    async with grpcstream.testing.serve(*servicers, **server_options) as running:
        yield running.server, running.target


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``condition`` (a status, not a timer) until it holds; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling a status grpc exposes no event for
            await asyncio.sleep(0.005)
