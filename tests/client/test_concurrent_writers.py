"""Many tasks may send on one stream: grpcstream's single writer keeps the call intact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import WAIT, Context, dummy_client, raw_server

PRODUCERS = 16
PER_PRODUCER = 1000


async def _collect(requests: AsyncIterator[Req], into: list[Req]) -> None:
    async for request in requests:
        into.append(request)


def _assert_each_producer_in_order(received: list[Req]) -> None:
    assert len(received) == PRODUCERS * PER_PRODUCER
    by_producer: dict[int, list[int]] = {}
    for request in received:
        by_producer.setdefault(request.producer, []).append(request.seq)
    assert sorted(by_producer) == list(range(PRODUCERS))
    for seqs in by_producer.values():
        assert seqs == list(range(PER_PRODUCER))


async def _produce(
    stream: grpcstream.ClientStream[Req, Reply] | grpcstream.BidiStream[Req, Reply], producer: int
) -> None:
    for seq in range(PER_PRODUCER):
        await stream.send(Req(producer=producer, seq=seq))


async def test_sixteen_tasks_share_one_client_stream() -> None:
    received: list[Req] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        await _collect(requests, received)
        return Reply(seq=len(received))

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        async with client.client_stream(client.stub.ClientStream) as upload:
            async with asyncio.TaskGroup() as group:
                for producer in range(PRODUCERS):
                    group.create_task(_produce(upload, producer))
            reply = await upload.close_and_receive()
        assert await upload.code() is grpc.StatusCode.OK
    assert reply.seq == PRODUCERS * PER_PRODUCER
    _assert_each_producer_in_order(received)


async def test_sixteen_tasks_share_one_bidi_stream() -> None:
    received: list[Req] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> None:
        await _collect(requests, received)
        await context.write(Reply(seq=len(received)))

    async with raw_server(bidi=handler) as target, dummy_client(target) as client:
        async with client.bidi_stream(client.stub.Bidi) as chat:
            async with asyncio.TaskGroup() as group:
                for producer in range(PRODUCERS):
                    group.create_task(_produce(chat, producer))
            await chat.close_send()
            replies = [reply.seq async for reply in chat]
        assert await chat.code() is grpc.StatusCode.OK
    assert replies == [PRODUCERS * PER_PRODUCER]
    _assert_each_producer_in_order(received)


@pytest.mark.raw_grpc
async def test_raw_grpc_concurrent_writes_fail_with_internal() -> None:
    """Documents raw grpc.aio: two tasks writing to one call break it (docs: pitfalls).

    The tasks' first writes start in the same event-loop step, so the second one always
    finds a write in flight: grpc core refuses it and grpc.aio ends the call with INTERNAL.
    The remaining writers then fail too; no write is queued behind another.
    """

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        async for _ in requests:
            pass
        return Reply()

    async with raw_server(client_stream=handler) as target, grpc.aio.insecure_channel(target) as ch:
        call = dummy_pb2_grpc.DummyServiceStub(ch).ClientStream()

        async def produce(producer: int) -> None:
            for seq in range(PER_PRODUCER):
                await call.write(Req(producer=producer, seq=seq))

        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(
                *(produce(p) for p in range(PRODUCERS)), return_exceptions=True
            )
            status = await call.code()
    errors = [result for result in results if isinstance(result, BaseException)]
    assert len(errors) == PRODUCERS, "a writer finished on a call that other tasks wrote to"
    internal = [
        error
        for error in errors
        if isinstance(error, grpc.aio.AioRpcError) and error.code() is grpc.StatusCode.INTERNAL
    ]
    assert internal, f"no writer failed with INTERNAL: {errors!r}"
    assert status is grpc.StatusCode.INTERNAL
