"""StreamServer and the handler adapters, driven by plain grpc.aio clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.servers import (
    WAIT,
    OpenRawChannel,
    grpcstream_tasks,
    serving,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("no_grpcstream_task_left")

PRODUCERS = 16
PER_PRODUCER = 1000


class SixteenProducers(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` spawns ``PRODUCERS`` tasks that each send ``PER_PRODUCER`` replies."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        async def produce(producer: int) -> None:
            for seq in range(PER_PRODUCER):
                await stream.send(Reply(producer=producer, seq=seq))

        for producer in range(PRODUCERS):
            stream.spawn(produce(producer))


class EndlessWithAProducer(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` spawns an idle producer and sends numbered replies until it fails.

    Events record the handler starting, its ``send()`` failing, the handler returning and
    the producer ending.
    """

    def __init__(self) -> None:
        self.handler_started = asyncio.Event()
        self.send_failed = asyncio.Event()
        self.handler_returned = asyncio.Event()
        self.producer_ended = asyncio.Event()

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        async def produce() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                self.producer_ended.set()

        stream.spawn(produce())
        self.handler_started.set()
        try:
            seq = 0
            while True:
                seq += 1
                await stream.send(Reply(seq=seq))
        except grpcstream.BrokenStreamError:
            self.send_failed.set()
            raise
        finally:
            self.handler_returned.set()


class SpawnsAndReturns(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` spawns a producer that sends for ever, and returns at once."""

    def __init__(self) -> None:
        self.producer_ended = asyncio.Event()

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        async def forever() -> None:
            try:
                seq = 0
                while True:
                    seq += 1
                    await stream.send(Reply(seq=seq))
            finally:
                self.producer_ended.set()

        stream.spawn(forever())


class RaisesNotFound(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``Unary`` raises ``NotFound`` with a trailing ``retry-hint`` entry."""

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        raise grpcstream.NotFound("no such log", trailing_metadata=(("retry-hint", "no"),))


class AbortsAfterN(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` sends ``request.seq`` replies, then raises ``Aborted``."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        for seq in range(request.seq):
            await stream.send(Reply(seq=seq))
        raise grpcstream.Aborted("stopped on purpose")


class LeaksASecret(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``Unary`` raises a ValueError whose message holds a secret and a path."""

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        raise ValueError("secret at /srv/app/secrets.py: hunter2")


class SaysGoodbyeOnClosing(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` sends "hello", waits for ``closing``, sends "bye" and returns.

    With ``complete=True`` it calls ``complete()`` before returning.
    """

    def __init__(self, *, complete: bool) -> None:
        self.complete = complete

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.send(Reply(value="hello"))
        await stream.closing.wait()
        await stream.send(Reply(value="bye"))
        if self.complete:
            stream.complete()


class FailingProducer(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` spawns a producer that sends seq 1 and raises; the handler waits."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        async def fail_soon() -> None:
            await stream.send(Reply(seq=1))
            raise ValueError("producer bug: secret detail")

        stream.spawn(fail_soon())
        await asyncio.Event().wait()  # only the producer's failure ends this


class AbortsThroughGrpcContext(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` calls grpc.aio's own ``context.abort(NOT_FOUND)``."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.grpc_context.abort(grpc.StatusCode.NOT_FOUND, "nope")


class CancelsItself(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` raises CancelledError from inside the handler."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        raise asyncio.CancelledError


def _stub(channel: grpc.aio.Channel) -> dummy_pb2_grpc.DummyServiceAsyncStub:
    return dummy_pb2_grpc.DummyServiceStub(channel)


async def _read_rest(
    call: grpc.aio.UnaryStreamCall[Req, Reply] | grpc.aio.StreamStreamCall[Req, Reply],
) -> list[Reply]:
    """Read to the end with read() (grpc.aio forbids mixing read() and ``async for``)."""
    replies: list[Reply] = []
    while True:
        reply = await call.read()
        if reply is grpc.aio.EOF:
            return replies
        assert isinstance(reply, Reply)
        replies.append(reply)


async def _read_rest_or_error(
    call: grpc.aio.UnaryStreamCall[Req, Reply],
) -> list[Reply]:
    replies: list[Reply] = []
    try:
        while (reply := await call.read()) is not grpc.aio.EOF:
            assert isinstance(reply, Reply)
            replies.append(reply)
    except grpc.aio.AioRpcError:
        pass  # the status is what the test checks
    return replies


async def test_add_finds_the_generated_registration_function() -> None:
    server = grpcstream.StreamServer("127.0.0.1:0")
    server.add(Echo())
    assert server.service_names == ("grpcstream.demo.testing.v1.DummyService",)


async def test_add_explains_when_it_cannot_find_the_registration() -> None:
    class NotGenerated(grpcstream.StreamServicer):
        pass

    server = grpcstream.StreamServer("127.0.0.1:0")
    with pytest.raises(grpcstream.UsageError, match="add_to_server="):
        server.add(NotGenerated())
    server.add(Echo(), add_to_server=dummy_pb2_grpc.add_DummyServiceServicer_to_server)
    assert server.service_names == ("grpcstream.demo.testing.v1.DummyService",)


async def test_port_is_known_after_start() -> None:
    server = grpcstream.StreamServer("127.0.0.1:0")
    with pytest.raises(grpcstream.UsageError):
        _ = server.port
    async with server:
        assert server.port > 0


async def test_all_four_patterns_with_a_raw_client(open_raw_channel: OpenRawChannel) -> None:
    async with serving(Echo()) as (_, target):
        stub = _stub(await open_raw_channel(target))
        assert (await stub.Unary(Req(value="hi", seq=7))).seq == 7
        assert [r.seq async for r in stub.ServerStream(Req(seq=3))] == [0, 1, 2]
        upload = stub.ClientStream()
        for seq in range(4):
            await upload.write(Req(seq=seq))
        await upload.done_writing()
        assert (await upload).value == "0,1,2,3"
        chat = stub.Bidi()
        await chat.write(Req(seq=1, value="a"))
        first = await chat.read()
        assert isinstance(first, Reply)
        assert first.value == "a"
        await chat.write(Req(seq=2, value="b"))
        await chat.done_writing()
        rest = [r.value for r in await _read_rest(chat)]
        assert rest == ["b"]
        assert await chat.code() is grpc.StatusCode.OK


async def test_sixteen_producers_share_one_server_stream() -> None:
    async with (
        serving(SixteenProducers()) as (_, target),  # type: ignore[abstract]
        grpc.aio.insecure_channel(target) as ch,
    ):
        call = _stub(ch).ServerStream(Req())
        replies = [reply async for reply in call]
        assert await call.code() is grpc.StatusCode.OK
    assert len(replies) == PRODUCERS * PER_PRODUCER
    by_producer: dict[int, list[int]] = {}
    for reply in replies:
        by_producer.setdefault(reply.producer, []).append(reply.seq)
    assert sorted(by_producer) == list(range(PRODUCERS))
    assert all(seqs == list(range(PER_PRODUCER)) for seqs in by_producer.values())


async def test_client_gone_fails_sends_ends_producers_and_returns_within_a_second() -> None:
    service = EndlessWithAProducer()  # type: ignore[abstract]
    async with serving(service) as (_, target), grpc.aio.insecure_channel(target) as ch:
        call = _stub(ch).ServerStream(Req())
        async for reply in call:
            if reply.seq == 5:
                break
        await wait_for(service.handler_started)
        assert grpcstream_tasks()  # the call's writer and producer are running
        call.cancel()
        async with asyncio.timeout(1.0):
            await service.send_failed.wait()
            await service.producer_ended.wait()
            await service.handler_returned.wait()
        await wait_until(lambda: not grpcstream_tasks())


async def test_rpc_error_in_handler_becomes_the_status() -> None:
    async with (
        serving(RaisesNotFound()) as (_, target),  # type: ignore[abstract]
        grpc.aio.insecure_channel(target) as ch,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _stub(ch).Unary(Req())
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such log"
    assert ("retry-hint", "no") in tuple(caught.value.trailing_metadata() or ())


async def test_messages_sent_before_an_error_arrive_before_the_status() -> None:
    async with (
        serving(AbortsAfterN()) as (_, target),  # type: ignore[abstract]
        grpc.aio.insecure_channel(target) as ch,
    ):
        call = _stub(ch).ServerStream(Req(seq=3))
        received: list[int] = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for reply in call:
                received.append(reply.seq)
    assert received == [0, 1, 2]
    assert caught.value.code() is grpc.StatusCode.ABORTED


async def test_other_exceptions_become_a_generic_internal_and_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="grpcstream.server")
    async with (
        serving(LeaksASecret()) as (_, target),  # type: ignore[abstract]
        grpc.aio.insecure_channel(target) as ch,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _stub(ch).Unary(Req())
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal server error"
    assert "hunter2" not in str(caught.value.debug_error_string())
    assert "secrets.py" not in (caught.value.details() or "")
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "hunter2" in logged
    assert any(r.exc_info for r in caplog.records)


async def test_request_stream_iterates_typed_messages_until_half_close() -> None:
    async with (
        serving(Echo()) as (_, target),
        grpc.aio.insecure_channel(target) as ch,
    ):
        upload = _stub(ch).ClientStream()
        for seq in range(100):
            await upload.write(Req(seq=seq))
        await upload.done_writing()
        reply = await upload
    assert reply.seq == 100


async def test_bidi_handler_reads_and_sends_concurrently() -> None:
    async with (
        serving(Echo()) as (_, target),
        grpc.aio.insecure_channel(target) as ch,
    ):
        chat = _stub(ch).Bidi()
        for seq in range(10):
            await chat.write(Req(seq=seq))
            reply = await chat.read()
            assert isinstance(reply, Reply)
            assert reply.seq == seq  # answered before the client half-closed
        await chat.done_writing()
        assert await chat.code() is grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("complete", "code"),
    [(False, grpc.StatusCode.UNAVAILABLE), (True, grpc.StatusCode.OK)],
    ids=["closing", "closing_complete"],
)
async def test_stop_sets_closing_and_lets_handlers_finish(
    complete: bool, code: grpc.StatusCode
) -> None:
    """Returning in a drain means "continue elsewhere" unless the handler said complete()."""
    service = SaysGoodbyeOnClosing(complete=complete)  # type: ignore[abstract]
    async with serving(service) as (server, target), grpc.aio.insecure_channel(target) as ch:
        call = _stub(ch).ServerStream(Req())
        first = await call.read()
        assert isinstance(first, Reply)
        assert first.value == "hello"
        stopping = asyncio.create_task(server.stop(grace=5.0))
        rest: list[str] = []
        with contextlib.suppress(grpc.aio.AioRpcError):  # UNAVAILABLE is read as an error
            while isinstance(reply := await call.read(), Reply):
                rest.append(reply.value)
        await stopping
        assert rest == ["bye"]  # sent before the status either way
        assert await call.code() is code
        if code is grpc.StatusCode.UNAVAILABLE:
            assert "server draining" in await call.details()
        assert server.closing.is_set()


async def test_oversized_message_gets_resource_exhausted_and_server_keeps_serving() -> None:
    async with (
        serving(Echo(), max_receive_message_bytes=1024) as (_, target),
        grpc.aio.insecure_channel(target) as ch,
    ):
        stub = _stub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Unary(Req(payload=b"x" * 4096))
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.Unary(Req(value="ok"))).value == "ok"


async def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="grace"):
        grpcstream.StreamServer(grace=-1)
    with pytest.raises(ValueError, match="max_concurrent_streams"):
        grpcstream.StreamServer(max_concurrent_streams=0)


async def test_producers_spawned_before_the_handler_returned_end_when_the_client_leaves() -> None:
    service = SpawnsAndReturns()  # type: ignore[abstract]
    async with serving(service) as (_, addr), grpc.aio.insecure_channel(addr) as ch:
        call = _stub(ch).ServerStream(Req())
        first = await call.read()
        assert isinstance(first, Reply)
        assert grpcstream_tasks()  # the producer outlives its handler, as it should
        call.cancel()
        await wait_for(service.producer_ended, timeout=2.0)
        await wait_until(lambda: not grpcstream_tasks())


async def test_a_failing_producer_ends_the_rpc_with_internal_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="grpcstream.server")
    servicer = FailingProducer()  # type: ignore[abstract]
    async with serving(servicer) as (_, addr), grpc.aio.insecure_channel(addr) as ch:
        call = _stub(ch).ServerStream(Req(), timeout=WAIT)
        replies = await _read_rest_or_error(call)
        assert [r.seq for r in replies] == [1]  # what it sent before failing still arrives
        assert await call.code() is grpc.StatusCode.INTERNAL
        assert await call.details() == "internal server error"
    assert any("producer bug" in str(r.exc_info) for r in caplog.records)


async def test_aborting_through_the_grpc_context_is_passed_through_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="grpcstream.server")
    servicer = AbortsThroughGrpcContext()  # type: ignore[abstract]
    async with serving(servicer) as (_, addr), grpc.aio.insecure_channel(addr) as ch:
        call = _stub(ch).ServerStream(Req(), timeout=WAIT)
        await _read_rest_or_error(call)
        assert await call.code() is grpc.StatusCode.NOT_FOUND
    assert caplog.records == []


async def test_a_handler_that_cancels_itself_still_ends_the_rpc() -> None:
    servicer = CancelsItself()  # type: ignore[abstract]
    async with serving(servicer) as (_, addr), grpc.aio.insecure_channel(addr) as ch:
        call = _stub(ch).ServerStream(Req(), timeout=WAIT)
        await _read_rest_or_error(call)
        assert await call.code() is grpc.StatusCode.CANCELLED


async def test_stop_returns_only_after_handlers_have_cleaned_up() -> None:
    service = EndlessWithAProducer()  # type: ignore[abstract]
    async with serving(service) as (server, addr), grpc.aio.insecure_channel(addr) as ch:
        call = _stub(ch).ServerStream(Req())
        await wait_for(service.handler_started)
        assert grpcstream_tasks()
        await server.stop(grace=0.1)  # the handler ignores `closing`: cancelled at grace
        assert service.handler_returned.is_set()
        assert service.producer_ended.is_set()
        assert grpcstream_tasks() == set()
        call.cancel()
