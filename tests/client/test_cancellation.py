"""Cancellation: break, a cancelled task, a closed client or cancel() take the RPC down.

The server sees the cancellation (its handler task is cancelled, or ``cancelled()`` turns
true), the handle reports ``CANCELLED`` and no grpcstream task is left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import BIG, never_reads
from tests.support.servers import (
    WAIT,
    BidiHandler,
    Context,
    ServerStreamHandler,
    dummy_client,
    grpcstream_tasks,
    raw_server,
    serving,
    wait_for,
)


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


async def _cancel_and_expect_cancelled_error(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(WAIT):
            await task
    assert task.cancelled()


async def test_break_cancels_the_rpc_and_leaves_no_task() -> None:
    server_saw_cancel = asyncio.Event()

    async def endless(request: Req, context: Context) -> None:
        try:
            seq = 0
            while True:
                seq += 1
                await context.write(Reply(seq=seq))
        except asyncio.CancelledError:
            server_saw_cancel.set()
            raise

    async with raw_server(server_stream=endless) as target, dummy_client(target) as client:
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            async for reply in replies:
                if reply.seq == 3:
                    break
        assert replies.done()
        assert grpcstream_tasks() == set()
        await wait_for(server_saw_cancel, timeout=1.0)
        assert await replies.code() is grpc.StatusCode.CANCELLED


async def test_break_out_of_bidi_cancels_the_rpc_and_reaps_the_writer() -> None:
    seen = asyncio.Event()
    _, bidi = _cancel_recorder(seen)

    async with raw_server(bidi=bidi) as target, dummy_client(target) as client:
        async with client.bidi_stream(client.stub.Bidi) as chat:
            await chat.send(Req(seq=1))
            async for reply in chat:
                assert reply.seq == 1
                break
        assert chat.done()
        assert await chat.code() is grpc.StatusCode.CANCELLED
        assert grpcstream_tasks() == set()
        await wait_for(seen, timeout=1.0)


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
    server_stream, _ = _cancel_recorder(seen)  # one reply, then silence
    got_first = asyncio.Event()
    async with (
        raw_server(server_stream=server_stream) as target,
        dummy_client(target) as client,
    ):
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:

            async def iterate() -> None:
                async for _ in replies:
                    got_first.set()  # the loop goes straight on into the next read

            reader = asyncio.create_task(iterate())
            await wait_for(got_first)  # so the reader now waits in that read
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(WAIT):
                    await reader
            await wait_for(seen)
            with pytest.raises(grpcstream.Cancelled):
                await anext(replies)


async def test_cancelling_the_task_blocked_in_send_cancels_the_rpc() -> None:
    started = asyncio.Event()
    seen = asyncio.Event()

    async def never_reads_until_cancelled(requests: AsyncIterator[Req], context: Context) -> Reply:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.set()
            raise
        raise AssertionError("unreachable")

    handles: list[grpcstream.ClientStream[Req, Reply]] = []
    async with (
        raw_server(client_stream=never_reads_until_cancelled) as target,
        dummy_client(target) as client,
    ):

        async def upload() -> None:
            async with client.client_stream(client.stub.ClientStream, max_queued=2) as stream:
                handles.append(stream)
                while True:
                    await stream.send(Req(payload=BIG))

        task = asyncio.create_task(upload())
        async with asyncio.timeout(WAIT):
            while not handles or handles[0].statistics().waiting_senders == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # a status poll, not synchronisation
        # Flow control can fill before the handler runs; a call cancelled before that never
        # reaches it (seen under load), and then there is no handler to see the cancel.
        await wait_for(started)
        await _cancel_and_expect_cancelled_error(task)
        await wait_for(seen)
        assert await handles[0].code() is grpc.StatusCode.CANCELLED
    assert grpcstream_tasks() == set()


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
        await wait_for(started)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(seen)
        # aclose() cancels a unary call in flight, too.
        call = client.unary_call(client.stub.Unary, Req())
        await client.aclose()
        with pytest.raises(grpcstream.Cancelled):
            await call


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
            client_stream=never_reads,
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


class Watcher(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Handlers that wait and record what ``cancelled()`` says once the client is gone."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.saw_cancelled = asyncio.Event()
        self.before: bool | None = None

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.before = context.cancelled()
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if context.cancelled() and context.done():
                self.saw_cancelled.set()
            raise
        return Reply()  # pragma: no cover - never reached

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        self.before = stream.cancelled()
        await stream.send(Reply(seq=1))
        self.started.set()
        # Poll the state a handler would poll between units of work.
        while not stream.cancelled():  # noqa: ASYNC110 - the state under test
            await asyncio.sleep(0.005)
        self.saw_cancelled.set()
        await asyncio.Event().wait()  # returning now could still end the call with OK


@pytest.mark.parametrize("pattern", ["unary", "server_stream"])
@pytest.mark.parametrize("how", ["client cancels", "deadline passes"])
async def test_cancelled_turns_true_when_the_client_is_gone(pattern: str, how: str) -> None:
    servicer = Watcher()  # type: ignore[abstract]
    timeout = 0.5 if how == "deadline passes" else WAIT
    async with serving(servicer) as (_, target), dummy_client(target, timeout=timeout) as client:
        if pattern == "unary":
            call = client.unary_call(client.stub.Unary, Req())
            await wait_for(servicer.started)
            if how == "client cancels":
                call.cancel()
            with pytest.raises((grpcstream.Cancelled, grpcstream.DeadlineExceeded)):
                await call
        else:
            with pytest.raises((grpcstream.Cancelled, grpcstream.DeadlineExceeded)):
                async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                    async for _ in replies:
                        await wait_for(servicer.started)
                        if how == "client cancels":
                            replies.cancel()
        await wait_for(servicer.saw_cancelled)
    assert servicer.before is False
