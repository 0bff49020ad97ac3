"""StreamClient under faults: cancellation, deadlines, server errors, dying servers, bad input.

Every server here is a plain grpc.aio server on 127.0.0.1 (``raw_server``) or a real child
process (``server_process``), so the client is proven on its own.
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
from tests.support.servers import (
    SERVICE,
    WAIT,
    BidiHandler,
    Context,
    ServerStreamHandler,
    dummy_client,
    grpcstream_tasks,
    raw_server,
    server_process,
    wait_for,
    wait_until,
)

BIG = b"x" * 256 * 1024
"""A payload large enough that a few of them fill the HTTP/2 flow-control windows."""

SHORT = 0.5
"""A deadline that expires quickly but leaves room for the call to start on a busy machine."""


async def _never(*_: object) -> None:
    await asyncio.Event().wait()


async def _never_unary(request: Req, context: Context) -> Reply:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _never_reads(requests: AsyncIterator[Req], context: Context) -> Reply:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _cancel_recorder(seen: asyncio.Event) -> tuple[ServerStreamHandler, BidiHandler]:
    """Handlers (server stream, bidi) that record the server observing cancellation."""

    async def server_stream(request: Req, context: Context) -> None:
        try:
            await context.write(Reply(seq=1))
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.set()
            raise

    async def bidi(requests: AsyncIterator[Req], context: Context) -> None:
        try:
            async for request in requests:
                await context.write(Reply(seq=request.seq))
            # grpc.aio also ends the request iterator on cancel: only the handler task
            # being cancelled proves the client cancelled rather than half-closed.
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.set()
            raise

    return server_stream, bidi


# -- 6. cancellation ---------------------------------------------------------------------


async def _cancel_and_expect_cancelled_error(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(WAIT):
            await task
    assert task.cancelled()


async def test_cancelling_the_iterating_task_cancels_a_server_stream() -> None:
    seen = asyncio.Event()
    server_stream, _ = _cancel_recorder(seen)
    first = asyncio.Event()
    handles: list[grpcstream.ResponseStream[Reply]] = []

    async with (
        raw_server(server_stream=server_stream) as target,
        dummy_client(target) as client,
    ):

        async def consume() -> None:
            async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                handles.append(replies)
                async for _ in replies:
                    first.set()

        task = asyncio.create_task(consume())
        await wait_for(first)
        await _cancel_and_expect_cancelled_error(task)
        await wait_for(seen)
        assert handles[0].done()
        assert await handles[0].code() is grpc.StatusCode.CANCELLED
        assert client.open_streams == 0
    assert grpcstream_tasks() == set()


async def test_cancelling_the_iterating_task_cancels_a_bidi_stream() -> None:
    seen = asyncio.Event()
    _, bidi = _cancel_recorder(seen)
    first = asyncio.Event()

    async with (
        raw_server(bidi=bidi) as target,
        dummy_client(target) as client,
    ):

        async def chat() -> None:
            async with client.bidi_stream(client.stub.Bidi) as stream:
                await stream.send(Req(seq=1))
                async for _ in stream:
                    first.set()

        task = asyncio.create_task(chat())
        await wait_for(first)
        await _cancel_and_expect_cancelled_error(task)
        await wait_for(seen)
    assert grpcstream_tasks() == set()


async def test_cancelling_an_iterating_helper_task_cancels_the_rpc_too() -> None:
    """A task that only iterates (it does not own the block) still takes the RPC down."""
    seen = asyncio.Event()
    server_stream, _ = _cancel_recorder(seen)
    async with (
        raw_server(server_stream=server_stream) as target,
        dummy_client(target) as client,
    ):
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            assert (await anext(replies)).seq == 1
            reader = asyncio.create_task(anext(replies))
            await wait_until(lambda: replies._reading)  # it is waiting in read()
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            await wait_for(seen)
            with pytest.raises(grpcstream.Cancelled):
                await anext(replies)


async def test_cancelling_the_task_blocked_in_send_cancels_the_rpc() -> None:
    seen = asyncio.Event()

    async def never_reads(requests: AsyncIterator[Req], context: Context) -> Reply:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.set()
            raise
        raise AssertionError("unreachable")

    handles: list[grpcstream.ClientStream[Req, Reply]] = []
    async with raw_server(client_stream=never_reads) as target, dummy_client(target) as client:

        async def upload() -> None:
            async with client.client_stream(client.stub.ClientStream, max_queued=2) as stream:
                handles.append(stream)
                while True:
                    await stream.send(Req(payload=BIG))

        task = asyncio.create_task(upload())
        async with asyncio.timeout(WAIT):
            while not handles or handles[0].statistics().waiting_senders == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # a status poll, not synchronisation
        await _cancel_and_expect_cancelled_error(task)
        await wait_for(seen)
        assert await handles[0].code() is grpc.StatusCode.CANCELLED
    assert grpcstream_tasks() == set()


@pytest.mark.parametrize("how", ["aclose", "async_with"])
async def test_closing_the_client_cancels_every_open_stream(how: str) -> None:
    seen_stream = asyncio.Event()
    seen_bidi = asyncio.Event()
    server_stream, _ = _cancel_recorder(seen_stream)
    _, bidi = _cancel_recorder(seen_bidi)
    reading = asyncio.Event()
    sending = asyncio.Event()
    outcomes: dict[str, BaseException] = {}

    async with (
        raw_server(
            server_stream=server_stream,
            bidi=bidi,
            client_stream=_never_reads,
        ) as target,
        grpcstream.connect(target) as channel,
    ):
        client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)

        async def iterate() -> None:
            try:
                async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                    async for _ in replies:
                        reading.set()
            except BaseException as exc:
                outcomes["iterate"] = exc

        async def iterate_bidi() -> None:
            try:
                async with client.bidi_stream(client.stub.Bidi) as chat:
                    await chat.send(Req(seq=1))
                    async for _ in chat:
                        pass
            except BaseException as exc:
                outcomes["bidi"] = exc

        async def send() -> None:
            try:
                async with client.client_stream(client.stub.ClientStream, max_queued=1) as up:
                    while True:
                        await up.send(Req(payload=BIG))
                        sending.set()
            except BaseException as exc:
                outcomes["send"] = exc

        async with asyncio.TaskGroup() as group:
            group.create_task(iterate())
            group.create_task(iterate_bidi())
            group.create_task(send())
            await wait_for(reading)
            await wait_for(sending)
            async with asyncio.timeout(WAIT):
                while client.open_streams < 3:  # noqa: ASYNC110 - a status poll
                    await asyncio.sleep(0.01)
            if how == "aclose":
                await client.aclose()
            else:
                async with client:
                    pass
        await wait_for(seen_stream)
        await wait_for(seen_bidi)
        assert client.open_streams == 0
        with pytest.raises(grpcstream.StreamClosedError):
            client.server_stream(client.stub.ServerStream, Req())
    assert isinstance(outcomes["iterate"], grpcstream.Cancelled)
    assert isinstance(outcomes["bidi"], grpcstream.Cancelled)
    assert isinstance(outcomes["send"], grpcstream.Cancelled)
    assert grpcstream_tasks() == set()


# -- 7. deadlines ------------------------------------------------------------------------


async def test_deadline_expires_during_iteration() -> None:
    async with raw_server(server_stream=_never, bidi=_never) as target:
        async with dummy_client(target) as client:
            async with client.server_stream(
                client.stub.ServerStream, Req(), timeout=SHORT
            ) as replies:
                with pytest.raises(grpcstream.DeadlineExceeded) as caught:
                    async with asyncio.timeout(WAIT):
                        await anext(replies)
            assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        async with dummy_client(target, timeout=SHORT) as client:  # the client default
            with pytest.raises(grpcstream.DeadlineExceeded):
                async with client.bidi_stream(client.stub.Bidi) as chat:
                    await chat.send(Req())
                    async with asyncio.timeout(WAIT):
                        await anext(chat)
    assert grpcstream_tasks() == set()


async def test_deadline_expires_while_send_waits_on_a_full_queue() -> None:
    async with raw_server(client_stream=_never_reads) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.DeadlineExceeded):
            async with client.client_stream(
                client.stub.ClientStream, timeout=SHORT, max_queued=2
            ) as upload:
                async with asyncio.timeout(WAIT):
                    while True:
                        await upload.send(Req(payload=BIG))
        assert upload.statistics().waiting_senders == 0
        assert await upload.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert grpcstream_tasks() == set()


async def test_deadline_expires_in_close_and_receive() -> None:
    async def reads_then_hangs(requests: AsyncIterator[Req], context: Context) -> Reply:
        async for _ in requests:
            pass
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with raw_server(client_stream=reads_then_hangs) as target:
        async with dummy_client(target, timeout=SHORT) as client:
            async with client.client_stream(client.stub.ClientStream) as upload:
                await upload.send(Req())
                with pytest.raises(grpcstream.DeadlineExceeded):
                    async with asyncio.timeout(WAIT):
                        await upload.close_and_receive()
            assert await upload.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_unary_deadline() -> None:
    async with raw_server(unary=_never_unary) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.DeadlineExceeded):
            async with asyncio.timeout(WAIT):
                await client.unary(client.stub.Unary, Req(), timeout=SHORT)


async def test_per_call_timeout_none_overrides_the_client_default() -> None:
    release = asyncio.Event()

    async def waits_for_release(request: Req, context: Context) -> None:
        await release.wait()
        await context.write(Reply(seq=1))

    async with raw_server(server_stream=waits_for_release) as target:
        async with dummy_client(target, timeout=SHORT) as client:
            async with (
                client.server_stream(client.stub.ServerStream, Req()) as defaulted,
                client.server_stream(client.stub.ServerStream, Req(), timeout=None) as unbound,
            ):
                # Only once the default deadline has provably expired is the server released.
                with pytest.raises(grpcstream.DeadlineExceeded):
                    async with asyncio.timeout(WAIT):
                        await anext(defaulted)
                release.set()
                async with asyncio.timeout(WAIT):
                    assert [r.seq async for r in unbound] == [1]
            assert await unbound.code() is grpc.StatusCode.OK


# -- 8. errors ---------------------------------------------------------------------------

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
    async with server_process() as server, dummy_client(f"127.0.0.1:{server.port}") as client:
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
    async with server_process() as server, dummy_client(f"127.0.0.1:{server.port}") as client:
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


@pytest.mark.raw_grpc
async def test_raw_grpc_reports_a_deadline_during_a_blocked_write_as_internal() -> None:
    """Documents raw grpc.aio: the deadline expiring under a blocked write becomes INTERNAL.

    The real status (DEADLINE_EXCEEDED) is lost; grpcstream reports ``DeadlineExceeded``
    (see ``test_deadline_expires_while_send_waits_on_a_full_queue``).
    """
    async with raw_server(client_stream=_never_reads) as target:
        async with grpc.aio.insecure_channel(target) as channel:
            call = dummy_pb2_grpc.DummyServiceStub(channel).ClientStream(timeout=SHORT)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(WAIT):
                    while True:
                        await call.write(Req(payload=BIG))
            assert caught.value.code() is grpc.StatusCode.INTERNAL
            assert await call.code() is grpc.StatusCode.INTERNAL
