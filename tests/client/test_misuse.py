"""Misuse fails before anything is sent, and the server can tell when its client is gone.

A call helper given the wrong kind of method, or a message of the wrong class, raises at
once: the server (which counts every RPC that reaches it, even unimplemented ones) sees
no RPC, and a stream that is open sends nothing of the bad message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.dummy_servicer import DummyStreamService
from tests.support.servers import WAIT, DummyClient, dummy_client, serving, wait_for


class RpcCounter(grpc.aio.ServerInterceptor):
    """Counts every RPC that reaches the server, before any handler lookup."""

    def __init__(self) -> None:
        self.rpcs = 0

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        self.rpcs += 1
        return await continuation(handler_call_details)


Misuse = Callable[[DummyClient], object]

WRONG_KIND: dict[str, tuple[Misuse, str]] = {
    "unary(server-streaming)": (
        lambda c: c.unary(c.stub.ServerStream, Req()),  # type: ignore[arg-type]
        r"client\.unary\(\) calls unary-unary methods, but .*ServerStream is server-streaming: "
        r"use client\.server_stream\(\)",
    ),
    "unary_call(bidi)": (
        lambda c: c.unary_call(c.stub.Bidi, Req()),  # type: ignore[arg-type]
        r"use client\.bidi_stream\(\)",
    ),
    "server_stream(unary)": (
        lambda c: c.server_stream(c.stub.Unary, Req()),  # type: ignore[call-overload]
        r"use client\.unary\(\)",
    ),
    "client_stream(bidi)": (
        lambda c: c.client_stream(c.stub.Bidi),  # type: ignore[call-overload]
        r"use client\.bidi_stream\(\)",
    ),
    "bidi_stream(client-streaming)": (
        lambda c: c.bidi_stream(c.stub.ClientStream),  # type: ignore[call-overload]
        r"use client\.client_stream\(\)",
    ),
    "unary(not a method)": (
        lambda c: c.unary(print, Req()),  # type: ignore[arg-type]
        r"needs a method of the client's stub",
    ),
}


@pytest.mark.parametrize("misuse", list(WRONG_KIND))
async def test_a_method_of_the_wrong_kind_starts_no_rpc(misuse: str) -> None:
    call, message = WRONG_KIND[misuse]
    counter = RpcCounter()
    async with (
        serving(DummyStreamService(), interceptors=[counter]) as (_, target),
        dummy_client(target, timeout=WAIT) as client,
    ):
        with pytest.raises(grpcstream.UsageError, match=message):
            outcome = call(client)
            if asyncio.iscoroutine(outcome):
                await outcome
        assert client.open_streams == 0
        # The same server counts a correct call, so a started RPC would have shown.
        assert (await client.unary(client.stub.Unary, Req(value="ok"))).value == "ok"
        assert counter.rpcs == 1


WRONG_REQUEST: dict[str, tuple[Misuse, str]] = {
    "unary(dict)": (
        lambda c: c.unary(c.stub.Unary, {"value": "x"}),  # type: ignore[misc]
        "takes Req messages, got dict",
    ),
    "unary_call(Reply)": (
        lambda c: c.unary_call(c.stub.Unary, Reply()),  # type: ignore[misc]
        "takes Req messages, got Reply",
    ),
    "server_stream(str)": (
        lambda c: c.server_stream(c.stub.ServerStream, "x"),  # type: ignore[misc]
        "takes Req messages, got str",
    ),
}


@pytest.mark.parametrize("misuse", list(WRONG_REQUEST))
async def test_a_request_of_the_wrong_class_starts_no_rpc(misuse: str) -> None:
    call, message = WRONG_REQUEST[misuse]
    counter = RpcCounter()
    async with (
        serving(DummyStreamService(), interceptors=[counter]) as (_, target),
        dummy_client(target, timeout=WAIT) as client,
    ):
        with pytest.raises(TypeError, match=message):
            outcome = call(client)
            if asyncio.iscoroutine(outcome):
                await outcome
        assert client.open_streams == 0
        assert counter.rpcs == 0


@pytest.mark.parametrize("pattern", ["client_stream", "bidi_stream"])
@pytest.mark.parametrize("how", ["send", "send_nowait"])
async def test_a_send_of_the_wrong_class_sends_nothing(pattern: str, how: str) -> None:
    servicer = DummyStreamService()
    async with serving(servicer) as (_, target), dummy_client(target, timeout=WAIT) as client:
        method = client.stub.ClientStream if pattern == "client_stream" else client.stub.Bidi
        async with getattr(client, pattern)(method) as stream:
            for wrong in (Reply(seq=7), {"seq": 7}, b"\x08\x07"):
                with pytest.raises(TypeError, match="nothing was sent") as caught:
                    if how == "send":
                        await stream.send(wrong)
                    else:
                        stream.send_nowait(wrong)
                assert f"takes Req messages, got {type(wrong).__name__}" in str(caught.value)
            await stream.send(Req(seq=1))
            await stream.close_send()
            if pattern == "bidi_stream":
                assert [reply.seq async for reply in stream] == [1]
        assert servicer.requests_seen == [Req(seq=1)]


class WrongReplies(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """A handler that tries to send the wrong class, then the right one."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        for wrong in (Req(seq=1), "text"):
            try:
                await stream.send(wrong)  # type: ignore[arg-type]
            except TypeError as error:
                self.refused.append(str(error))
            try:
                stream.send_nowait(wrong)  # type: ignore[arg-type]
            except TypeError as error:
                self.refused.append(str(error))
        await stream.send(Reply(seq=2))


async def test_server_stream_send_of_the_wrong_class_sends_nothing() -> None:
    servicer = WrongReplies()  # type: ignore[abstract]
    async with serving(servicer) as (_, target), dummy_client(target, timeout=WAIT) as client:
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            assert [reply async for reply in replies] == [Reply(seq=2)]
    assert len(servicer.refused) == 4
    assert "takes Reply messages, got Req: nothing was sent" in servicer.refused[0]
    assert "takes Reply messages, got str: nothing was sent" in servicer.refused[2]


# -- the server sees its client go -------------------------------------------------------------


class Watcher(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Handlers that wait and record what ``cancelled()`` says once the client is gone."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.saw_cancelled = asyncio.Event()
        self.before: bool | None = None

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.before = context.cancelled()
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if context.cancelled() and context.done():
                self.saw_cancelled.set()
            raise
        return Reply()  # pragma: no cover - never reached

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        self.before = stream.cancelled()
        await stream.send(Reply(seq=1))
        self.started.set()
        # Poll the state a handler would poll between units of work.
        while not stream.cancelled():  # noqa: ASYNC110 - the state under test
            await asyncio.sleep(0.005)
        self.saw_cancelled.set()
        await asyncio.Event().wait()  # returning now could still end the call with OK


@pytest.mark.parametrize("pattern", ["unary", "server_stream"])
@pytest.mark.parametrize("how", ["client cancels", "deadline passes"])
async def test_cancelled_turns_true_when_the_client_is_gone(pattern: str, how: str) -> None:
    servicer = Watcher()  # type: ignore[abstract]
    timeout = 0.5 if how == "deadline passes" else WAIT
    async with serving(servicer) as (_, target), dummy_client(target, timeout=timeout) as client:
        if pattern == "unary":
            call = client.unary_call(client.stub.Unary, Req())
            await wait_for(servicer.started)
            if how == "client cancels":
                call.cancel()
            with pytest.raises((grpcstream.Cancelled, grpcstream.DeadlineExceeded)):
                await call
        else:
            with pytest.raises((grpcstream.Cancelled, grpcstream.DeadlineExceeded)):
                async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                    async for _ in replies:
                        await wait_for(servicer.started)
                        if how == "client cancels":
                            replies.cancel()
        await wait_for(servicer.saw_cancelled)
    assert servicer.before is False
