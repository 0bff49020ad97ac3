"""Type inference of StreamClient's four call styles, pinned with ``assert_type``.

mypy --strict checks this file (it is under ``tests/``): every ``assert_type`` below is a
static claim that the generated typed stub's request and response types flow through
``StreamClient`` into the call handles. The test also runs each call against a plain
grpc.aio server, so the same code is proven at run time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import assert_type

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import Context, raw_server


async def _unary(request: Req, context: Context) -> Reply:
    return Reply(value=request.value, seq=request.seq)


async def _server_stream(request: Req, context: Context) -> None:
    for seq in range(3):
        await context.write(Reply(seq=seq))


async def _client_stream(requests: AsyncIterator[Req], context: Context) -> Reply:
    return Reply(seq=len([r async for r in requests]))


async def _bidi(requests: AsyncIterator[Req], context: Context) -> None:
    async for request in requests:
        await context.write(Reply(seq=request.seq))


async def test_call_styles_infer_message_types_from_the_typed_stub() -> None:
    async with (
        raw_server(
            unary=_unary, server_stream=_server_stream, client_stream=_client_stream, bidi=_bidi
        ) as target,
        grpcstream.connect(target) as channel,
        grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub) as client,
    ):
        # The async stub type exists only for type checkers: spell it as a string.
        assert_type(client, "grpcstream.StreamClient[dummy_pb2_grpc.DummyServiceAsyncStub]")

        reply = await client.unary(client.stub.Unary, Req(value="hi", seq=7))
        assert_type(reply, Reply)
        assert (reply.value, reply.seq) == ("hi", 7)

        call = client.unary_call(client.stub.Unary, Req(seq=8))
        assert_type(call, grpcstream.UnaryCall[Reply])
        assert_type(await call, Reply)
        assert (await call).seq == 8

        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            assert_type(replies, grpcstream.ResponseStream[Reply])
            seqs: list[int] = []
            async for item in replies:
                assert_type(item, Reply)
                seqs.append(item.seq)
        assert seqs == [0, 1, 2]

        async with client.client_stream(client.stub.ClientStream) as upload:
            assert_type(upload, grpcstream.ClientStream[Req, Reply])
            await upload.send(Req(seq=1))
            summary = await upload.close_and_receive()
            assert_type(summary, Reply)
        assert summary.seq == 1

        async with client.bidi_stream(client.stub.Bidi) as chat:
            assert_type(chat, grpcstream.BidiStream[Req, Reply])
            await chat.send(Req(seq=5))
            await chat.close_send()
            echoed = [item async for item in chat]
            assert_type(echoed, list[Reply])
        assert [r.seq for r in echoed] == [5]
