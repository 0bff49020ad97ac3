"""Limits StreamServer enforces itself, before authentication and before any handler.

* ``max_metadata_bytes`` holds however a raw HTTP/2 client splits its header block
  (HEADERS + CONTINUATION frames, written here with the ``h2`` package);
* ``max_concurrent_rpcs`` slots are taken after ``auth``: a crowd of callers with bad
  tokens stuck in ``verify`` cannot keep valid calls out.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import h2.config
import h2.connection
import h2.events
import hpack
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.servers import SERVICE, WAIT, serving

LIMIT = 8192


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: hpack's pure-Python Huffman coder is quadratic."""

    def encode(self, headers: object, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)  # type: ignore[arg-type]


async def raw_h2_unary(target: str, headers: list[tuple[str, str]]) -> dict[str, str]:
    """One unary call on a raw HTTP/2 connection; returns the response headers and trailers.

    ``h2`` splits a header block larger than the peer's frame size into HEADERS and
    CONTINUATION frames, which is how a client slips past grpc's own metadata check.
    """
    host, port = target.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.encoder = _PlainEncoder()
    connection.initiate_connection()
    stream_id = connection.get_next_available_stream_id()
    request = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", f"/{SERVICE}/Unary"),
        (":authority", target),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *headers,
    ]
    connection.send_headers(stream_id, request)
    body = Req(value="through").SerializeToString()
    connection.send_data(stream_id, struct.pack(">BI", 0, len(body)) + body, end_stream=True)
    writer.write(connection.data_to_send())
    received: dict[str, str] = {}
    try:
        async with asyncio.timeout(WAIT):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                        for key, value in event.headers:
                            received[_text(key)] = _text(value)
                    if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        return received
                writer.write(connection.data_to_send())
    finally:
        writer.close()
        await writer.wait_closed()
    return received


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CountingVerify:
    """A BearerAuth verify that counts its calls and accepts the token "good"."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, token: str) -> object:
        self.calls += 1
        return "user" if token == "good" else None


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(f"x-k{i}", "v") for i in range(10_000)], id="10000-keys"),
        pytest.param([("x-big", "a" * 400 * 1024)], id="400KiB-value"),
    ],
)
async def test_metadata_split_across_continuation_frames_is_refused_before_auth(
    headers: list[tuple[str, str]],
) -> None:
    servicer = Echo()
    verify = CountingVerify()
    options = {"max_metadata_bytes": LIMIT, "auth": grpcstream.BearerAuth(verify)}
    async with serving(servicer, **options) as (_, target):
        response = await raw_h2_unary(target, [("authorization", "Bearer good"), *headers])
        assert response.get("grpc-status") == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        # grpc's own check catches a split block now and then (with its own message, or
        # none); every time it does not, grpcstream's does. Without grpcstream's check
        # this call reaches the handler and ends OK.
        assert servicer.calls == 0
        assert verify.calls == 0
        # The same raw client with small metadata gets through auth to the handler.
        small = await raw_h2_unary(target, [("authorization", "Bearer good"), ("x-k", "v")])
        assert small.get("grpc-status") == "0"
        assert (servicer.calls, verify.calls) == (1, 1)


def test_max_metadata_bytes_is_validated() -> None:
    with pytest.raises(ValueError, match="max_metadata_bytes"):
        grpcstream.StreamServer(max_metadata_bytes=0)


async def test_bad_tokens_cannot_starve_valid_calls_of_concurrency_slots() -> None:
    release = asyncio.Event()
    waiting = 0

    async def verify(token: str) -> object:
        nonlocal waiting
        if token == "good":
            return "user"
        waiting += 1
        await release.wait()  # an identity provider that takes its time to say no
        return None

    servicer = Echo()
    options = {"max_concurrent_rpcs": 20, "auth": grpcstream.BearerAuth(verify)}
    async with serving(servicer, **options) as (_, target):
        async with (
            grpcstream.connect(target) as bad_channel,
            grpcstream.connect(target) as good_channel,
        ):
            bad = grpcstream.StreamClient(
                bad_channel, dummy_pb2_grpc.DummyServiceStub, auth=grpcstream.BearerToken("bad")
            )
            good = grpcstream.StreamClient(
                good_channel, dummy_pb2_grpc.DummyServiceStub, auth=grpcstream.BearerToken("good")
            )
            attackers = [
                asyncio.ensure_future(bad.unary(bad.stub.Unary, Req(), timeout=WAIT * 3))
                for _ in range(200)
            ]
            try:
                async with asyncio.timeout(WAIT * 3):
                    while waiting < 200:  # noqa: ASYNC110 - every bad call is inside verify
                        await asyncio.sleep(0.01)
                replies = await asyncio.gather(
                    *(
                        good.unary(good.stub.Unary, Req(value="valid", seq=i), timeout=WAIT)
                        for i in range(20)
                    )
                )
                assert [reply.seq for reply in replies] == list(range(20))
            finally:
                release.set()
            outcomes = await asyncio.gather(*attackers, return_exceptions=True)
    assert all(isinstance(outcome, grpcstream.Unauthenticated) for outcome in outcomes)
    assert servicer.calls == 20


class RawDummy(dummy_pb2_grpc.DummyServiceServicer):
    """Plain grpc.aio handlers (no grpcstream adapters) served by a StreamServer."""

    def __init__(self) -> None:
        self.seen: list[Req] = []

    async def Unary(self, request: Req, context: Any) -> Reply:
        self.seen.append(request)
        return Reply(seq=request.seq)

    async def ServerStream(self, request: Req, context: Any) -> AsyncIterator[Reply]:
        self.seen.append(request)
        yield Reply(seq=request.seq)

    async def ClientStream(self, request_iterator: AsyncIterator[Req], context: Any) -> Reply:
        async for request in request_iterator:
            self.seen.append(request)
        return Reply()

    async def Bidi(
        self, request_iterator: AsyncIterator[Req], context: Any
    ) -> AsyncIterator[Reply]:
        async for request in request_iterator:
            self.seen.append(request)
            yield Reply(seq=request.seq)


GARBAGE = b"\xff\xff\xff"  # a truncated varint tag: not a protobuf message


@pytest.mark.parametrize("limit", [None, 5])
async def test_plain_grpc_handlers_get_invalid_argument_for_unparseable_requests(
    limit: int | None,
) -> None:
    servicer = RawDummy()
    async with serving(servicer, max_concurrent_rpcs=limit) as (_, target):
        async with grpc.aio.insecure_channel(target) as channel:
            good = Req(seq=1).SerializeToString()
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                f"/{SERVICE}/Unary"
            )
            server_stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                f"/{SERVICE}/ServerStream"
            )
            calls: list[Any] = [unary(GARBAGE, timeout=WAIT), server_stream(GARBAGE, timeout=WAIT)]
            for kind in ("stream_unary", "stream_stream"):
                name = "ClientStream" if kind == "stream_unary" else "Bidi"
                call = getattr(channel, kind)(f"/{SERVICE}/{name}")(timeout=WAIT)
                await call.write(good)
                await call.write(GARBAGE)
                await call.done_writing()
                calls.append(call)
            for call in calls:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    if hasattr(call, "read"):
                        while await call.read() is not grpc.aio.EOF:
                            pass
                    else:
                        await call
                assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert await call.details() == "a request message could not be parsed"
            # and the server still answers, with the handlers' own results
            stub = dummy_pb2_grpc.DummyServiceStub(channel)
            assert (await stub.Unary(Req(seq=7), timeout=WAIT)).seq == 7
            assert [r.seq async for r in stub.ServerStream(Req(seq=8), timeout=WAIT)] == [8]
    assert servicer.seen == [Req(seq=1), Req(seq=1), Req(seq=7), Req(seq=8)]
