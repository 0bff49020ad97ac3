"""connect(): an async context manager with grpcstream's channel presets, and its checks."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import Context, raw_server


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
