"""Misuse fails at once and clearly, before anything is sent.

A call helper given the wrong kind of method, a message of the wrong class or a bad
option raises at once: the server (which counts every RPC that reaches it, even
unimplemented ones) sees no RPC, and a stream that is open sends nothing of the bad
message. A stream used before ``async with``, or read by two tasks, is refused.
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
from tests.client.doubles import Echo
from tests.support.servers import (
    WAIT,
    Context,
    DummyClient,
    dummy_client,
    raw_server,
    serving,
    wait_for,
)


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
        serving(Echo(), interceptors=[counter]) as (_, target),
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
        serving(Echo(), interceptors=[counter]) as (_, target),
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
async def test_a_send_of_the_wrong_class_sends_nothing(
    pattern: str, how: str, echo: Echo, echo_client: DummyClient
) -> None:
    client = echo_client
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
    assert echo.requests_seen == [Req(seq=1)]


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


async def _one_reply_then_silence(request: Req, context: Context) -> None:
    await context.write(Reply(seq=1))
    await asyncio.Event().wait()


async def test_iterating_from_two_tasks_is_refused() -> None:
    got_first = asyncio.Event()
    async with (
        raw_server(server_stream=_one_reply_then_silence) as target,
        dummy_client(target) as client,
    ):
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:

            async def iterate() -> None:
                async for _ in replies:
                    got_first.set()  # the loop goes straight on into the next read

            first = asyncio.create_task(iterate())
            await wait_for(got_first)  # so the first task now waits in that read
            with pytest.raises(grpcstream.BusyStreamError):
                async with asyncio.timeout(WAIT):
                    await anext(replies)
            assert not first.done()  # the refused read did not disturb the first reader
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first


async def test_stream_must_be_entered_before_use() -> None:
    async def handler(request: Req, context: Context) -> None:
        return None

    async with raw_server(server_stream=handler) as target, dummy_client(target) as client:
        replies = client.server_stream(client.stub.ServerStream, Req())
        with pytest.raises(grpcstream.UsageError, match="async with"):
            await anext(replies)
        async with replies:
            assert [r async for r in replies] == []
        with pytest.raises(grpcstream.UsageError, match="already used"):
            async with replies:
                pass


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": "1"}, ValueError, "timeout"),
        ({"max_queued": 0}, ValueError, "max_queued"),
        ({"max_queued": 2.0}, ValueError, "max_queued"),
        ({"metadata": (("Upper", "v"),)}, ValueError, "lowercase"),
        ({"metadata": (("a b", "v"),)}, ValueError, "lowercase"),
        ({"metadata": (("k-bin", "text"),)}, TypeError, "bytes"),
        ({"metadata": (("k", 5),)}, TypeError, "str or bytes"),
        ({"metadata": ("kv",)}, TypeError, "pairs"),
        ({"metadata": "k=v"}, TypeError, "pairs"),
    ],
)
async def test_bad_client_and_call_options_raise_clear_errors(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    async with grpcstream.connect("127.0.0.1:1") as channel:
        with pytest.raises(error, match=match):
            grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub, **kwargs)
        client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
        stub = client.stub
        starts: list[Callable[[], object]] = [
            lambda: client.client_stream(stub.ClientStream, **kwargs),
            lambda: client.bidi_stream(stub.Bidi, **kwargs),
        ]
        if "max_queued" not in kwargs:  # only the sending patterns have a queue
            starts.append(lambda: client.server_stream(stub.ServerStream, Req(), **kwargs))
            starts.append(lambda: client.unary_call(stub.Unary, Req(), **kwargs))
        for start in starts:
            with pytest.raises(error, match=match):
                start()
        if "max_queued" not in kwargs:
            with pytest.raises(error, match=match):
                await client.unary(stub.Unary, Req(), **kwargs)
        assert client.open_streams == 0
