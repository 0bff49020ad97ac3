"""Half-close: close_send() flushes and is idempotent, and leaving a block half-closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

import grpcstream
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import Context, dummy_client, raw_server, wait_for


async def test_close_send_is_idempotent_and_flushes_everything() -> None:
    received: list[Req] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        async for request in requests:
            received.append(request)
        return Reply(seq=len(received))

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        async with client.client_stream(client.stub.ClientStream) as upload:
            for seq in range(50):
                upload.send_nowait(Req(seq=seq))
            await asyncio.gather(upload.close_send(), upload.close_send())
            stats = upload.statistics()
            assert (stats.queued, stats.sent) == (0, 50)
            await upload.close_send()
            with pytest.raises(grpcstream.StreamClosedError, match="close_send"):
                await upload.send(Req(seq=99))
            with pytest.raises(grpcstream.StreamClosedError):
                upload.send_nowait(Req(seq=99))
            reply = await upload.close_and_receive()
    assert reply.seq == 50
    assert [r.seq for r in received] == list(range(50))


async def test_leaving_the_block_half_closes_a_client_stream() -> None:
    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        return Reply(seq=len([r async for r in requests]))

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        async with client.client_stream(client.stub.ClientStream) as upload:
            for seq in range(3):
                await upload.send(Req(seq=seq))
        assert upload.response().seq == 3
        assert await upload.code() is grpc.StatusCode.OK


async def test_bidi_server_waiting_for_half_close_completes_without_extra_call() -> None:
    finished = asyncio.Event()

    async def answer_after_half_close(requests: AsyncIterator[Req], context: Context) -> None:
        count = len([r async for r in requests])  # only ends at the client's half-close
        await context.write(Reply(seq=count))
        finished.set()

    async with raw_server(bidi=answer_after_half_close) as target, dummy_client(target) as c:
        async with c.bidi_stream(c.stub.Bidi) as chat:
            for seq in range(5):
                await chat.send(Req(seq=seq))
        await wait_for(finished)
        assert await chat.code() is grpc.StatusCode.OK


async def test_bidi_half_close_then_read_to_the_end() -> None:
    async def echo_count(requests: AsyncIterator[Req], context: Context) -> None:
        count = len([r async for r in requests])
        await context.write(Reply(seq=count))

    async with raw_server(bidi=echo_count) as target, dummy_client(target) as client:
        async with client.bidi_stream(client.stub.Bidi) as chat:
            await chat.send(Req())
            await chat.close_send()
            assert [r.seq async for r in chat] == [1]


async def test_close_send_succeeds_when_the_server_ends_ok_right_after_the_half_close() -> None:
    async def count_then_end(requests: AsyncIterator[Req], context: Context) -> None:
        seen = 0
        async for _ in requests:
            seen += 1
            if seen == 3:
                return  # status OK, racing the client's half-close

    async with raw_server(bidi=count_then_end) as target, dummy_client(target) as client:
        for _ in range(50):  # the status and the half-close race; try it many times
            async with client.bidi_stream(client.stub.Bidi) as chat:
                for seq in range(3):
                    await chat.send(Req(seq=seq))
                await chat.close_send()
                assert [reply async for reply in chat] == []
            assert await chat.code() is grpc.StatusCode.OK
