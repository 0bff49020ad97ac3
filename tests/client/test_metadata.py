"""Metadata in both directions, and the status accessors of every call handle.

Servers are plain grpc.aio servers on 127.0.0.1 (``raw_server``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import WAIT, Context, dummy_client, raw_server

INITIAL = (("init", "i"), ("init-bin", b"\x00\x01"))
TRAILING = (("trail", "t"),)


def _recording_handlers(seen: dict[str, list[tuple[str, Any]]]) -> dict[str, Any]:
    """Handlers for all four patterns that record the request metadata and send both kinds."""

    async def greet(name: str, context: Context) -> None:
        seen[name] = [(m[0], m[1]) for m in context.invocation_metadata() or ()]
        await context.send_initial_metadata(INITIAL)
        context.set_trailing_metadata(TRAILING)

    async def unary(request: Req, context: Context) -> Reply:
        await greet("unary", context)
        return Reply(seq=1)

    async def server_stream(request: Req, context: Context) -> None:
        await greet("server_stream", context)
        await context.write(Reply(seq=1))

    async def client_stream(requests: AsyncIterator[Req], context: Context) -> Reply:
        await greet("client_stream", context)
        return Reply(seq=len([r async for r in requests]))

    async def bidi(requests: AsyncIterator[Req], context: Context) -> None:
        await greet("bidi", context)
        async for request in requests:
            await context.write(Reply(seq=request.seq))

    return {
        "unary": unary,
        "server_stream": server_stream,
        "client_stream": client_stream,
        "bidi": bidi,
    }


async def _assert_accessors(handle: grpcstream.CallHandle) -> None:
    async with asyncio.timeout(WAIT):
        initial = await handle.initial_metadata()
        assert set(INITIAL) <= set(initial)
        assert set(TRAILING) <= set(await handle.trailing_metadata())
        assert await handle.code() is grpc.StatusCode.OK
        assert await handle.details() == ""
    assert handle.done()


async def test_metadata_both_ways_and_status_on_every_handle() -> None:
    seen: dict[str, list[tuple[str, Any]]] = {}
    async with raw_server(**_recording_handlers(seen)) as target:
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(
                channel, dummy_pb2_grpc.DummyServiceStub, metadata=(("tenant", "acme"),)
            ) as client,
        ):
            per_call = (("request-id", "42"), ("token-bin", b"\xff"))

            call = client.unary_call(client.stub.Unary, Req(), metadata=per_call)
            assert (await call).seq == 1
            assert (await call).seq == 1  # awaiting again returns the same response
            await _assert_accessors(call)

            async with client.server_stream(
                client.stub.ServerStream, Req(), metadata=per_call
            ) as replies:
                assert [r.seq async for r in replies] == [1]
            await _assert_accessors(replies)

            async with client.client_stream(client.stub.ClientStream, metadata=per_call) as up:
                await up.send(Req())
                assert (await up.close_and_receive()).seq == 1
            await _assert_accessors(up)

            async with client.bidi_stream(client.stub.Bidi, metadata=per_call) as chat:
                await chat.send(Req(seq=3))
                await chat.close_send()
                assert [r.seq async for r in chat] == [3]
            await _assert_accessors(chat)

            # Without metadata= only the client default is sent.
            assert (await client.unary(client.stub.Unary, Req())).seq == 1
            only_default = seen["unary"]

    for name in ("server_stream", "client_stream", "bidi"):
        assert ("tenant", "acme") in seen[name]
        assert ("request-id", "42") in seen[name]
        assert ("token-bin", b"\xff") in seen[name]
    assert ("tenant", "acme") in only_default
    assert all(key != "request-id" for key, _ in only_default)


async def _await(call: grpcstream.UnaryCall[Reply]) -> Reply:
    return await call


async def test_unary_call_handle_reports_errors_and_cancellation() -> None:
    started = asyncio.Event()

    async def unary(request: Req, context: Context) -> Reply:
        if request.value == "fail":
            await context.abort(grpc.StatusCode.NOT_FOUND, "nope", trailing_metadata=TRAILING)
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with raw_server(unary=unary) as target, dummy_client(target) as client:
        failing = client.unary_call(client.stub.Unary, Req(value="fail"))
        with pytest.raises(grpcstream.NotFound) as caught:
            await failing
        assert caught.value.trailing_metadata == TRAILING
        assert await failing.code() is grpc.StatusCode.NOT_FOUND
        assert await failing.details() == "nope"
        assert set(TRAILING) <= set(await failing.trailing_metadata())

        hanging = client.unary_call(client.stub.Unary, Req())
        waiter = asyncio.create_task(_await(hanging))
        await asyncio.wait_for(started.wait(), WAIT)
        assert hanging.cancel()
        with pytest.raises(grpcstream.Cancelled):
            await waiter
        assert await hanging.code() is grpc.StatusCode.CANCELLED
        assert client.open_streams == 0
        with pytest.raises(grpcstream.UsageError):
            hanging.spawn(asyncio.sleep(0))
