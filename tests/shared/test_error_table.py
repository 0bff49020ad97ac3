"""Every row of the error table in docs/exceptions.md, one test each.

One meaning per error: after the caller's own ``cancel()`` everything raises
``Cancelled``; ``StreamClosedError`` means only "send after close_send"; a call that the
server ended while this side was still sending raises ``BrokenStreamError``, on the client
as on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.servers import WAIT, DummyClient, OpenDummyClient, dummy_client, serving

pytestmark = pytest.mark.usefixtures("no_grpcstream_task_left")


class QuickEnd(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Handlers that end the call (OK, or NOT_FOUND) without waiting for the client."""

    def __init__(self) -> None:
        self.fail = False

    @grpcstream.client_streaming
    async def ClientStream(
        self, requests: grpcstream.RequestStream[Req], context: grpcstream.CallContext
    ) -> Reply:
        if self.fail:
            raise grpcstream.NotFound("gone")
        return Reply(value="early")

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        if self.fail:
            raise grpcstream.NotFound("gone")


class EndlessReplies(Echo):
    """``Echo``, but ``ServerStream`` sends numbered replies until its ``send()`` fails,
    which sets ``send_failed``."""

    def __init__(self) -> None:
        super().__init__()
        self.send_failed = asyncio.Event()

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        seq = 0
        try:
            while True:
                seq += 1
                await stream.send(Reply(seq=seq))
        except grpcstream.BrokenStreamError:
            self.send_failed.set()
            raise


async def _until_send_fails(
    stream: grpcstream.ClientStream[Req, Reply] | grpcstream.BidiStream[Req, Reply],
) -> BaseException:
    async with asyncio.timeout(WAIT):
        while True:
            try:
                await stream.send(Req(value="x" * 1000))
            except grpcstream.GrpcStreamError as error:
                return error
            await asyncio.sleep(0)


@pytest.fixture
async def client(open_dummy_client: OpenDummyClient) -> AsyncIterator[DummyClient]:
    async with serving(EndlessReplies()) as (_, target):
        yield await open_dummy_client(target, timeout=WAIT)


async def test_close_and_receive_after_cancel_raises_cancelled(client: DummyClient) -> None:
    async with client.client_stream(client.stub.ClientStream) as upload:
        await upload.send(Req(seq=1))
        upload.cancel()
        with pytest.raises(grpcstream.Cancelled):
            await upload.close_and_receive()
    assert await upload.code() is grpcstream.StatusCode.CANCELLED


async def test_leaving_a_client_stream_block_after_cancel_raises_cancelled(
    client: DummyClient,
) -> None:
    with pytest.raises(grpcstream.Cancelled):
        async with client.client_stream(client.stub.ClientStream) as upload:
            upload.cancel()


async def test_leaving_a_never_iterated_bidi_block_after_cancel_raises_cancelled(
    client: DummyClient,
) -> None:
    with pytest.raises(grpcstream.Cancelled):
        async with client.bidi_stream(client.stub.Bidi) as chat:
            chat.cancel()


async def test_sending_after_cancel_raises_cancelled(client: DummyClient) -> None:
    async with client.bidi_stream(client.stub.Bidi) as chat:
        chat.cancel()
        with pytest.raises(grpcstream.Cancelled):
            await chat.send(Req())
        with pytest.raises(grpcstream.Cancelled):
            chat.send_nowait(Req())
        with pytest.raises(grpcstream.Cancelled):
            await chat.close_send()
        with pytest.raises(grpcstream.Cancelled):
            await chat.receive()


async def test_reading_after_cancel_raises_cancelled(client: DummyClient) -> None:
    async with client.server_stream(client.stub.ServerStream, Req()) as replies:
        await replies.__anext__()
        replies.cancel()
        with pytest.raises(grpcstream.Cancelled):
            async for _ in replies:
                pass
    call = client.unary_call(client.stub.Unary, Req())
    call.cancel()
    with pytest.raises(grpcstream.Cancelled):
        await call


async def test_send_after_close_send_is_a_usage_error(client: DummyClient) -> None:
    async with client.client_stream(client.stub.ClientStream) as upload:
        await upload.close_send()
        with pytest.raises(grpcstream.StreamClosedError, match="close_send") as caught:
            await upload.send(Req())
        assert isinstance(caught.value, grpcstream.UsageError)
        assert (await upload.close_and_receive()).seq == 0


@pytest.mark.parametrize("pattern", ["client_stream", "bidi_stream"])
async def test_a_server_that_ended_ok_while_the_client_sends_gives_broken_stream(
    pattern: str,
) -> None:
    servicer = QuickEnd()  # type: ignore[abstract]
    async with serving(servicer) as (_, target), dummy_client(target, timeout=WAIT) as c:
        method = c.stub.ClientStream if pattern == "client_stream" else c.stub.Bidi
        async with getattr(c, pattern)(method) as stream:
            error = await _until_send_fails(stream)
            assert isinstance(error, grpcstream.BrokenStreamError)
            assert not isinstance(error, grpcstream.UsageError)
            if pattern == "client_stream":
                assert (await stream.close_and_receive()).value == "early"
        assert await stream.code() is grpcstream.StatusCode.OK


@pytest.mark.parametrize("pattern", ["client_stream", "bidi_stream"])
async def test_a_server_that_failed_while_the_client_sends_gives_its_status(pattern: str) -> None:
    servicer = QuickEnd()  # type: ignore[abstract]
    servicer.fail = True
    async with serving(servicer) as (_, target), dummy_client(target, timeout=WAIT) as c:
        method = c.stub.ClientStream if pattern == "client_stream" else c.stub.Bidi
        with pytest.raises(grpcstream.NotFound, match="gone"):
            async with getattr(c, pattern)(method) as stream:
                error = await _until_send_fails(stream)
                assert isinstance(error, grpcstream.NotFound)
                raise error


async def test_the_server_sending_to_a_client_that_left_gets_broken_stream() -> None:
    servicer = EndlessReplies()
    async with serving(servicer) as (_, target), dummy_client(target, timeout=WAIT) as client:
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            await replies.__anext__()
        await asyncio.wait_for(servicer.send_failed.wait(), WAIT)


async def test_send_nowait_on_a_full_queue_would_block(client: DummyClient) -> None:
    async with client.client_stream(client.stub.ClientStream, max_queued=1) as upload:
        with pytest.raises(grpcstream.WouldBlock):
            for _ in range(1000):
                upload.send_nowait(Req(value="x" * 100_000))
        await upload.close_send()
        assert (await upload.close_and_receive()).seq >= 1


async def test_a_status_from_a_number_is_its_typed_error() -> None:
    assert type(grpcstream.status_error(5, "no")) is grpcstream.NotFound
    error = grpcstream.status_error(grpcstream.StatusCode.UNAVAILABLE, "later", (("k", "v"),))
    assert isinstance(error, grpcstream.Unavailable)
    assert (error.details, error.trailing_metadata) == ("later", (("k", "v"),))
    assert grpcstream.StatusCode is __import__("grpc").StatusCode
    for bad in (0, grpcstream.StatusCode.OK, 17, -1):
        with pytest.raises(ValueError, match=r"OK is not an error|not a gRPC status"):
            grpcstream.status_error(bad)
    with pytest.raises(TypeError, match="must be an int"):
        grpcstream.status_error("NOT_FOUND")  # type: ignore[arg-type]
    for number in range(1, 17):
        assert grpcstream.status_error(number).code.value[0] == number
