"""Compression per client, per call and per server call, measured as bytes on the wire.

A TCP proxy counts what crosses the connection in each direction: a compressed call of
zero bytes must be a small fraction of the same call uncompressed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.servers import WAIT, serving
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

PAYLOAD = bytes(200_000)
GZIP = grpcstream.Compression.Gzip


@contextlib.asynccontextmanager
async def through_proxy(
    servicer: object, **server_options: object
) -> AsyncIterator[tuple[TcpProxy, str]]:
    async with serving(servicer, **server_options) as (server, _):
        async with tcp_proxy(server.port) as proxy:
            yield proxy, f"127.0.0.1:{proxy.port}"


async def _upload_bytes(
    target: str, proxy: TcpProxy, client_compression: grpcstream.Compression | None, **call: object
) -> int:
    async with grpcstream.connect(target) as channel:
        client = grpcstream.StreamClient(
            channel, dummy_pb2_grpc.DummyServiceStub, timeout=WAIT, compression=client_compression
        )
        before = proxy.bytes_up
        async with client.client_stream(client.stub.ClientStream, **call) as upload:  # type: ignore[call-overload]
            for seq in range(5):
                await upload.send(Req(seq=seq, payload=PAYLOAD))
            assert (await upload.close_and_receive()).seq == 5
        reply = await client.unary(client.stub.Unary, Req(value="u", payload=PAYLOAD), **call)  # type: ignore[arg-type]
        assert reply.value == "u"
        return proxy.bytes_up - before


async def test_client_compression_by_default_and_per_call() -> None:
    async with through_proxy(Echo()) as (proxy, target):
        plain = await _upload_bytes(target, proxy, None)
        zipped = await _upload_bytes(target, proxy, GZIP)
        per_call = await _upload_bytes(target, proxy, None, compression=GZIP)
        overridden = await _upload_bytes(
            target, proxy, GZIP, compression=grpcstream.Compression.NoCompression
        )
    assert plain > 6 * len(PAYLOAD)
    assert zipped < plain / 20
    assert per_call < plain / 20
    assert overridden > 6 * len(PAYLOAD)


class SendsZeros(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` sends three large zero payloads; with ``per_call`` set, it first
    calls ``set_compression(per_call)``."""

    def __init__(self, per_call: grpcstream.Compression | None = None) -> None:
        self.per_call = per_call

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        if self.per_call is not None:
            stream.set_compression(self.per_call)
        for seq in range(3):
            await stream.send(Reply(seq=seq, payload=PAYLOAD))


async def _download_bytes(target: str, proxy: TcpProxy) -> int:
    async with grpcstream.connect(target) as channel:
        client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub, timeout=WAIT)
        before = proxy.bytes_down
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            assert [len(reply.payload) async for reply in replies] == [len(PAYLOAD)] * 3
        return proxy.bytes_down - before


async def test_server_compression_by_default_and_per_call() -> None:
    async with through_proxy(SendsZeros()) as (proxy, target):  # type: ignore[abstract]
        plain = await _download_bytes(target, proxy)
    async with through_proxy(SendsZeros(per_call=GZIP)) as (proxy, target):  # type: ignore[abstract]
        per_call = await _download_bytes(target, proxy)
    async with through_proxy(SendsZeros(), compression=GZIP) as (proxy, target):  # type: ignore[abstract]
        by_default = await _download_bytes(target, proxy)
    assert plain > 3 * len(PAYLOAD)
    assert per_call < plain / 20
    assert by_default < plain / 20
