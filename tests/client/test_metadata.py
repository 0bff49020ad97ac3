"""StreamClient call options: metadata in both directions, status accessors on every
handle (including ``unary_call()``), ``connect()`` presets, and bad input.

Servers are plain grpc.aio servers on 127.0.0.1 (``raw_server``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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


async def test_cancelling_the_task_awaiting_a_unary_call_cancels_the_rpc() -> None:
    started = asyncio.Event()
    seen = asyncio.Event()

    async def unary(request: Req, context: Context) -> Reply:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.set()
            raise
        raise AssertionError("unreachable")

    async with raw_server(unary=unary) as target, dummy_client(target) as client:
        task = asyncio.create_task(client.unary(client.stub.Unary, Req()))
        await asyncio.wait_for(started.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(seen.wait(), WAIT)
        # aclose() cancels a unary call in flight, too.
        call = client.unary_call(client.stub.Unary, Req())
        await client.aclose()
        with pytest.raises(grpcstream.Cancelled):
            await call


# -- 10. connect() -----------------------------------------------------------------------


async def test_connect_is_an_async_context_manager_with_the_keepalive_preset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen_options: list[list[tuple[str, int | str]]] = []
    real = grpc.aio.insecure_channel

    def recording(target: str, options: Any = None, **kwargs: Any) -> grpc.aio.Channel:
        seen_options.append(list(options or ()))
        return real(target, options=options, **kwargs)

    monkeypatch.setattr(grpc.aio, "insecure_channel", recording)

    async def unary(request: Req, context: Context) -> Reply:
        return Reply(seq=request.seq)

    async with raw_server(unary=unary) as target:
        async with grpcstream.connect(target) as channel:
            assert isinstance(channel, grpc.aio.Channel)
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
            assert (await client.unary(client.stub.Unary, Req(seq=9))).seq == 9
        async with grpcstream.connect(target, keepalive=None, options=[("grpc.x", 1)]):
            pass
    preset, no_keepalive = (dict(options) for options in seen_options)
    for key, value in grpcstream.KeepAlive().channel_options():
        assert preset[key] == value
    assert preset["grpc.keepalive_time_ms"] == 300_000  # grpc's default servers allow 5 min
    assert preset["grpc.http2.ping_timeout_ms"] == preset["grpc.keepalive_timeout_ms"] == 20_000
    assert preset["grpc.initial_reconnect_backoff_ms"] == 100
    assert preset["grpc.max_reconnect_backoff_ms"] == 1000
    assert "grpc.keepalive_time_ms" not in no_keepalive
    assert no_keepalive["grpc.x"] == 1


async def test_a_response_above_max_receive_message_bytes_is_resource_exhausted() -> None:
    async def big(request: Req, context: Context) -> Reply:
        return Reply(payload=b"x" * 2048)

    async def big_stream(request: Req, context: Context) -> None:
        await context.write(Reply(seq=1))
        await context.write(Reply(payload=b"x" * 2048))

    async with raw_server(unary=big, server_stream=big_stream) as target:
        async with grpcstream.connect(target, max_receive_message_bytes=1024) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
            with pytest.raises(grpcstream.ResourceExhausted):
                await client.unary(client.stub.Unary, Req())
            async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                assert (await anext(replies)).seq == 1
                with pytest.raises(grpcstream.ResourceExhausted):
                    await anext(replies)


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_receive_message_bytes": 0},
        {"max_receive_message_bytes": -1},
        {"max_send_message_bytes": 1.5},
        {"max_send_message_bytes": True},
    ],
)
def test_connect_rejects_bad_sizes(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be a positive int"):
        grpcstream.connect("127.0.0.1:1", **kwargs)


@pytest.mark.parametrize("kwargs", [{"time": 0}, {"timeout": -1}, {"time": "30"}])
def test_keepalive_rejects_bad_durations(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        grpcstream.KeepAlive(**kwargs)


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
