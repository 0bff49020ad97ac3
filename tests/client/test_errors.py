"""Failures reach the caller as typed errors: a server's status, a failing producer, a dead
server, an unparseable response. None leaves the call open or a task behind.

Servers are plain grpc.aio servers on 127.0.0.1 (``raw_server``) or real child processes,
so the client is proven on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import BIG, patient_server_process
from tests.support.servers import (
    SERVICE,
    WAIT,
    Context,
    dummy_client,
    grpcstream_tasks,
    raw_server,
    wait_until,
)

TRAILERS = (("k", "v"),)


async def _abort(context: Context) -> None:
    await context.abort(grpc.StatusCode.NOT_FOUND, "x", trailing_metadata=TRAILERS)


def _assert_not_found(error: BaseException) -> None:
    assert isinstance(error, grpcstream.NotFound)
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.details == "x"
    assert ("k", "v") in error.trailing_metadata


async def test_server_status_becomes_the_matching_typed_error() -> None:
    async def unary(request: Req, context: Context) -> Reply:
        await _abort(context)
        raise AssertionError("unreachable")

    async def server_stream(request: Req, context: Context) -> None:
        await context.write(Reply(seq=1))
        await _abort(context)

    async def client_stream(requests: AsyncIterator[Req], context: Context) -> Reply:
        async for _ in requests:
            break
        await _abort(context)
        raise AssertionError("unreachable")

    async def bidi(requests: AsyncIterator[Req], context: Context) -> None:
        await _abort(context)

    async with (
        raw_server(
            unary=unary, server_stream=server_stream, client_stream=client_stream, bidi=bidi
        ) as target,
        dummy_client(target) as client,
    ):
        with pytest.raises(grpcstream.RpcError) as caught:
            await client.unary(client.stub.Unary, Req())
        _assert_not_found(caught.value)

        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            with pytest.raises(grpcstream.RpcError) as caught:
                async for reply in replies:
                    assert reply.seq == 1
            _assert_not_found(caught.value)
            assert replies.received == 1

        with pytest.raises(grpcstream.RpcError) as caught:
            async with client.client_stream(client.stub.ClientStream) as upload:
                await upload.send(Req())
                await upload.close_and_receive()
        _assert_not_found(caught.value)

        async with client.bidi_stream(client.stub.Bidi) as chat:
            with pytest.raises(grpcstream.RpcError) as caught:
                await anext(chat)
            _assert_not_found(caught.value)
        for handle in (replies, upload, chat):
            assert await handle.code() is grpc.StatusCode.NOT_FOUND
            assert await handle.details() == "x"
            assert ("k", "v") in await handle.trailing_metadata()


class ProducerFailed(Exception):
    pass


async def _failing_producer(stream: grpcstream.BidiStream[Req, Reply]) -> None:
    await stream.send(Req(seq=1))
    raise ProducerFailed("boom")


async def test_a_failing_producer_surfaces_from_iteration() -> None:
    async def echo(requests: AsyncIterator[Req], context: Context) -> None:
        async for request in requests:
            await context.write(Reply(seq=request.seq))

    async with raw_server(bidi=echo) as target, dummy_client(target) as client:
        with pytest.raises(ProducerFailed, match="boom"):
            async with client.bidi_stream(client.stub.Bidi) as chat:
                chat.spawn(_failing_producer(chat))
                async with asyncio.timeout(WAIT):
                    async for _ in chat:
                        pass
        assert chat.done()
    assert grpcstream_tasks() == set()


async def test_a_failing_producer_surfaces_from_close_and_receive_and_block_exit() -> None:
    async def count(requests: AsyncIterator[Req], context: Context) -> Reply:
        return Reply(seq=len([r async for r in requests]))

    async def fail(stream: grpcstream.ClientStream[Req, Reply]) -> None:
        await stream.send(Req())
        raise ProducerFailed("boom")

    async with raw_server(client_stream=count) as target, dummy_client(target) as client:
        with pytest.raises(ProducerFailed):
            async with client.client_stream(client.stub.ClientStream) as upload:
                upload.spawn(fail(upload))
                async with asyncio.timeout(WAIT):
                    await upload.close_and_receive()
        with pytest.raises(ProducerFailed):
            async with client.client_stream(client.stub.ClientStream) as upload:
                upload.spawn(fail(upload))  # the block's normal exit waits for it
    assert grpcstream_tasks() == set()


async def test_server_process_killed_mid_stream_raises_unavailable_quickly() -> None:
    async with (
        patient_server_process() as server,
        dummy_client(f"127.0.0.1:{server.port}") as client,
    ):
        async with client.server_stream(client.stub.ServerStream, Req(value="100:5")) as s:
            seqs = [(await anext(s)).seq for _ in range(5)]
            assert seqs == [1, 2, 3, 4, 5]
            await server.wait_line("PAUSED 5")
            await server.kill()
            with pytest.raises(grpcstream.Unavailable):
                async with asyncio.timeout(2):
                    await anext(s)
    assert grpcstream_tasks() == set()


async def test_server_process_killed_while_send_is_blocked_raises_unavailable_quickly() -> None:
    async with (
        patient_server_process() as server,
        dummy_client(f"127.0.0.1:{server.port}") as client,
    ):
        upload = client.client_stream(
            client.stub.ClientStream, metadata=(("mode", "stall"),), max_queued=2
        )
        with pytest.raises(grpcstream.Unavailable):  # leaving the block reports it too
            async with upload:
                await server.wait_line("STALLED")

                async def fill() -> None:
                    while True:
                        await upload.send(Req(payload=BIG))

                filler = asyncio.create_task(fill())
                await wait_until(lambda: upload.statistics().waiting_senders == 1)
                await server.kill()
                with pytest.raises(grpcstream.Unavailable):
                    async with asyncio.timeout(2):
                        await filler
    assert grpcstream_tasks() == set()


def _garbage(_: Reply) -> bytes:
    return b"\xff\xff\xff"  # not a valid protobuf encoding of anything


async def _garbage_stream(request: Req, context: Context) -> None:
    await context.write(Reply(seq=1))
    await asyncio.Event().wait()


async def _garbage_unary(request: Req, context: Context) -> Reply:
    return Reply(seq=1)


async def _garbage_server() -> tuple[grpc.aio.Server, str]:
    """A server whose response serializer emits bytes no Reply parses from."""
    handlers = {
        "ServerStream": grpc.unary_stream_rpc_method_handler(
            _garbage_stream, request_deserializer=Req.FromString, response_serializer=_garbage
        ),
        "Unary": grpc.unary_unary_rpc_method_handler(
            _garbage_unary, request_deserializer=Req.FromString, response_serializer=_garbage
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_unparseable_response_raises_internal_and_never_hangs() -> None:
    server, target = await _garbage_server()
    try:
        async with dummy_client(target) as client:
            async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                with pytest.raises(grpcstream.Internal, match="deserialized"):
                    async with asyncio.timeout(2):
                        await anext(replies)
                assert replies.done()  # the RPC was cancelled, not left open
            with pytest.raises(grpcstream.Internal, match="deserialized"):
                async with asyncio.timeout(2):
                    await client.unary(client.stub.Unary, Req())
        assert grpcstream_tasks() == set()
    finally:
        await server.stop(None)


@pytest.mark.raw_grpc
async def test_raw_grpc_hands_out_none_for_an_unparseable_response() -> None:
    """Documents raw grpc.aio: an unparseable response is logged and read() returns None.

    The stream stays open, so a reader that skips ``None`` waits forever and one that uses
    it fails with an unrelated ``AttributeError``; grpcstream raises ``Internal`` instead.
    """
    server, target = await _garbage_server()
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = dummy_pb2_grpc.DummyServiceStub(channel)
            call = stub.ServerStream(Req())
            async with asyncio.timeout(WAIT):
                assert await call.read() is None
            assert not call.done()
            call.cancel()
            async with asyncio.timeout(WAIT):
                assert await stub.Unary(Req()) is None
    finally:
        await server.stop(None)
