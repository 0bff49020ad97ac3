"""Hostile and broken clients: the server answers with a status, stays bounded, and recovers.

Every test ends by checking that the server still serves a normal call correctly, that no
grpcstream task is left and that its asyncio task count is back at the baseline measured
before the abuse began.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
import grpc.aio
import psutil
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.servers import (
    SERVICE,
    WAIT,
    ServerProcess,
    grpcstream_tasks,
    serving,
    wait_until,
)
from tests.support.subprocess_stream_server import FLOOD_MESSAGE_BYTES
from tests.support.tcp_proxy import tcp_proxy

GARBAGE = b"\xff\xff\xff"  # a truncated varint tag: not a valid protobuf message
MiB = 1024 * 1024
ServicerT = TypeVar("ServicerT", bound=Echo)


class RepliesOfRequestedSize(Echo):
    """``Unary`` and ``Bidi`` answer each request with a ``value`` of ``request.seq`` bytes."""

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.calls += 1
        return Reply(value="x" * request.seq, seq=request.seq)

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        self.calls += 1
        async for request in requests:
            await stream.send(Reply(value="x" * request.seq, seq=request.seq))


class HoldsBidi(Echo):
    """``Bidi`` sends "hello", then holds the stream open until it is cancelled."""

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        self.calls += 1
        await stream.send(Reply(value="hello"))
        await asyncio.Event().wait()


class TalksAfterHalfClose(Echo):
    """``Bidi`` echoes, and after the client's half-close keeps sending until it is gone.

    Events record the handler reaching that point, its ``send()`` failing, and its return.
    """

    def __init__(self) -> None:
        super().__init__()
        self.talking = asyncio.Event()
        self.send_failed = asyncio.Event()
        self.handler_returned = asyncio.Event()

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        self.calls += 1
        async for request in requests:
            await stream.send(Reply(seq=request.seq))
        self.talking.set()
        try:
            while True:
                await stream.send(Reply(value="more"))
        except grpcstream.BrokenStreamError:
            self.send_failed.set()
            raise
        finally:
            self.handler_returned.set()


def _stub(channel: grpc.aio.Channel) -> dummy_pb2_grpc.DummyServiceAsyncStub:
    return dummy_pb2_grpc.DummyServiceStub(channel)


async def serves_normally(target: str) -> None:
    """A fresh connection gets correct answers for a unary and a streaming call."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = _stub(channel)
        assert (await stub.Unary(Req(value="ok", seq=3), timeout=WAIT)).seq == 3
        replies = [reply.seq async for reply in stub.ServerStream(Req(seq=3), timeout=WAIT)]
        assert replies == [0, 1, 2]


async def task_baseline(target: str) -> int:
    """The task count of this loop (server included) once a first call has come and gone."""
    await serves_normally(target)
    return len(asyncio.all_tasks())


async def back_to_baseline(target: str, baseline: int) -> None:
    """Every task the abuse caused has ended, and the server answers correctly."""
    await wait_until(lambda: not grpcstream_tasks() and len(asyncio.all_tasks()) <= baseline)
    await serves_normally(target)
    await wait_until(lambda: len(asyncio.all_tasks()) <= baseline)


@contextlib.asynccontextmanager
async def served(
    servicer: ServicerT, **server_options: object
) -> AsyncIterator[tuple[ServicerT, str, int]]:
    """``servicer`` on an in-process StreamServer; yields it, the target, the task baseline."""
    async with serving(servicer, **server_options) as (_, target):
        baseline = await task_baseline(target)
        servicer.calls = 0  # count only what the test itself causes
        servicer.requests_seen.clear()
        yield servicer, target, baseline


async def test_unparseable_requests_get_a_status_and_never_reach_a_handler() -> None:
    async with served(Echo()) as (servicer, target, baseline):
        async with grpc.aio.insecure_channel(target) as channel:
            # No serializers: the bytes go on the wire as they are.
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                f"/{SERVICE}/Unary"
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await unary(GARBAGE, timeout=WAIT)
            # grpc.aio deserializes unary requests before any handler code and would
            # answer UNKNOWN quoting the DecodeError; StreamServer answers
            # INVALID_ARGUMENT with a generic message (the detail is logged).
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details() == "a request message could not be parsed"

            server_stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                f"/{SERVICE}/ServerStream"
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                _ = [reply async for reply in server_stream(GARBAGE, timeout=WAIT)]
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details() == "a request message could not be parsed"
            assert servicer.calls == 0  # neither handler ran

            # Streamed requests are read by the handler's RequestStream: a message that
            # does not parse ends the RPC with INVALID_ARGUMENT; the handler only ever saw
            # the good message before it.
            good = Req(seq=1).SerializeToString()
            upload: grpc.aio.StreamUnaryCall[bytes, bytes] = channel.stream_unary(
                f"/{SERVICE}/ClientStream"
            )(timeout=WAIT)
            chat: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(
                f"/{SERVICE}/Bidi"
            )(timeout=WAIT)
            for call in (upload, chat):
                await call.write(good)
                await call.write(GARBAGE)
                await call.done_writing()
            # grpc reports a call's status only once its responses have been read
            with pytest.raises(grpc.aio.AioRpcError):
                while await chat.read() is not grpc.aio.EOF:
                    pass
            for call in (upload, chat):
                assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert await call.details() == "a request message could not be parsed"
            assert servicer.requests_seen == [Req(seq=1), Req(seq=1)]
        await back_to_baseline(target, baseline)


async def test_oversized_messages_are_refused_in_both_directions() -> None:
    limits = {"max_receive_message_bytes": 1024, "max_send_message_bytes": 1024}
    async with served(RepliesOfRequestedSize(), **limits) as (servicer, target, baseline):
        async with grpcstream.connect(target) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub, timeout=WAIT)
            stub = client.stub
            # client -> server: refused by the server's max_receive before any handler
            with pytest.raises(grpcstream.ResourceExhausted, match="larger than max"):
                await client.unary(stub.Unary, Req(value="x" * 2000))
            assert servicer.calls == 0
            with pytest.raises(grpcstream.ResourceExhausted):
                async with client.client_stream(stub.ClientStream) as upload:
                    await upload.send(Req(seq=1))
                    await upload.send(Req(value="x" * 2000))
                    await upload.close_and_receive()
            # server -> client: the server's max_send refuses its own oversized reply
            with pytest.raises(grpcstream.ResourceExhausted):
                await client.unary(stub.Unary, Req(seq=2000))
            with pytest.raises(grpcstream.ResourceExhausted):
                async with client.bidi_stream(stub.Bidi) as chat:
                    await chat.send(Req(seq=2000))
                    await chat.close_send()
                    async for _ in chat:
                        pass
            # just under the limits is fine
            assert len((await client.unary(stub.Unary, Req(seq=900))).value) == 900
        await back_to_baseline(target, baseline)


async def test_default_limits_are_4_mib_in_both_directions() -> None:
    five_mib = 5 * MiB
    async with served(RepliesOfRequestedSize()) as (servicer, target, baseline):
        # the client accepts more than 4 MiB here, so only the server's send limit applies
        async with grpcstream.connect(target, max_receive_message_bytes=8 * MiB) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub, timeout=WAIT)
            with pytest.raises(grpcstream.ResourceExhausted, match="SERVER: Sent message larger"):
                await client.unary(client.stub.Unary, Req(seq=five_mib))
            with pytest.raises(grpcstream.ResourceExhausted, match="CLIENT: Sent message larger"):
                await client.unary(client.stub.Unary, Req(value="x" * five_mib))
            assert servicer.calls == 1  # only the first reached a handler
        await back_to_baseline(target, baseline)


async def test_oversized_metadata_is_refused_before_any_handler() -> None:
    async with served(Echo(), max_metadata_bytes=2048) as (servicer, target, baseline):
        async with grpcstream.connect(target) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub, timeout=WAIT)
            stub = client.stub
            big = (("x-big", "a" * 4000),)
            with pytest.raises(grpcstream.ResourceExhausted, match="metadata size"):
                await client.unary(stub.Unary, Req(), metadata=big)
            with pytest.raises(grpcstream.ResourceExhausted):
                await client.unary(stub.Unary, Req(), metadata=(("x-huge", "a" * 100_000),))
            assert servicer.calls == 0  # refused before a request handler ran
            # grpc still hands a streaming call to its handler before resetting it, so
            # the Bidi handler may start; it is cancelled at once and leaves nothing.
            with pytest.raises(grpcstream.ResourceExhausted):
                async with client.bidi_stream(stub.Bidi, metadata=big) as chat:
                    await chat.send(Req(seq=1))
                    async for _ in chat:
                        pass
            small = (("x-tag", "a" * 500),)
            reply = await client.unary(stub.Unary, Req(value="through"), metadata=small)
            assert reply.value == "through"
        await back_to_baseline(target, baseline)


async def test_rpcs_beyond_max_concurrent_rpcs_are_refused() -> None:
    async with served(HoldsBidi(), max_concurrent_rpcs=4) as (servicer, target, baseline):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = _stub(channel)
            holding = [stub.Bidi() for _ in range(4)]
            for call in holding:
                first = await asyncio.wait_for(call.read(), WAIT)
                assert isinstance(first, Reply)
            extra = [stub.Unary(Req(value="extra"), timeout=WAIT) for _ in range(20)]
            results = await asyncio.gather(*extra, return_exceptions=True)
            for result in results:
                assert isinstance(result, grpc.aio.AioRpcError)
                assert result.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert servicer.calls == 4  # only the four admitted handlers ever ran
            for call in holding:
                call.cancel()
        await back_to_baseline(target, baseline)


async def test_streams_beyond_max_concurrent_streams_wait_for_a_free_slot() -> None:
    async with served(HoldsBidi(), max_concurrent_streams=2) as (servicer, target, baseline):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = _stub(channel)
            holding = [stub.Bidi() for _ in range(2)]
            for call in holding:
                assert isinstance(await asyncio.wait_for(call.read(), WAIT), Reply)
            # HTTP/2 limit per connection: a third stream is not refused, it queues in
            # the client until a slot frees (here its own short deadline ends the wait).
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Unary(Req(value="queued"), timeout=0.5)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert servicer.calls == 2
            waiting = stub.Unary(Req(value="queued", seq=5), timeout=WAIT)
            holding[0].cancel()
            assert (await waiting).seq == 5
            holding[1].cancel()
        await back_to_baseline(target, baseline)


STREAMS = 200
MESSAGE_BYTES = FLOOD_MESSAGE_BYTES


async def _stats(stub: dummy_pb2_grpc.DummyServiceAsyncStub) -> dict[str, int]:
    reply = await stub.Unary(Req(), timeout=WAIT)
    stats: dict[str, int] = json.loads(reply.value)
    return stats


async def _wait_stats(stub: dummy_pb2_grpc.DummyServiceAsyncStub, **expected: int) -> None:
    async with asyncio.timeout(30):
        while True:
            stats = await _stats(stub)
            if all(stats[key] <= value for key, value in expected.items()):
                return
            await asyncio.sleep(0.05)  # polling the server's own counters, not a timer


@pytest.mark.slow
async def test_slow_loris_streams_leave_server_memory_bounded() -> None:
    # Each flood handler sends fresh 4 KiB messages as fast as send() lets it. A client
    # that never reads stops granting HTTP/2 window, so grpc stops taking messages, the
    # writer blocks, the handler's send queue (max_queued = 64) fills and send() waits.
    # What the server then holds per stream is bounded by the queue, not by time:
    #   64 queued Reply objects + 1 in the writer + 1 inside grpc's chttp2 stream buffer
    #   (flow control keeps the rest unsent)            ~ 66 x 4 KiB   ~ 270 KiB
    #   + call state, three tasks, a serialized copy     ~ tens of KiB
    # 200 streams x ~300 KiB ~ 60 MiB; allocator slack can double that. Everything past
    # the windows (at most the client's window, 64 KiB per stream by default, and the
    # connection window) sits in the *client's* memory, not the server's. Without the
    # bounded queue the same client would grow the server by ~4 KiB per message forever.
    per_stream = (64 + 2) * MESSAGE_BYTES
    bound = min(200 * MiB, 2 * STREAMS * per_stream + 40 * MiB)
    server = ServerProcess(0, "tests.support.subprocess_stream_server", "flood")
    target = await server.start()
    try:
        async with (
            grpc.aio.insecure_channel(target) as control,
            # its own connection: the flood must not block the control channel's window
            grpc.aio.insecure_channel(
                target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as flood_channel,
        ):
            control_stub = _stub(control)
            baseline = (await _stats(control_stub))["tasks"]
            rss_before = psutil.Process(server.process.pid).memory_info().rss
            flood = _stub(flood_channel)
            calls = [flood.ServerStream(Req()) for _ in range(STREAMS)]
            # never read: wait until every handler's queue is full and send() waits
            async with asyncio.timeout(60):
                while (await _stats(control_stub))["flood_blocked"] < STREAMS:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # polling the server's counters, not a timer
            rss_blocked = psutil.Process(server.process.pid).memory_info().rss
            growth = rss_blocked - rss_before
            assert growth < bound, f"server grew {growth / MiB:.0f} MiB (bound {bound / MiB:.0f})"
            for call in calls:
                call.cancel()
            await _wait_stats(control_stub, flood_active=0, tasks=baseline)
            assert await _stats(control_stub) == {
                "tasks": baseline,
                "flood_active": 0,
                "flood_blocked": 0,
            }
    finally:
        await server.kill()


async def test_a_client_that_half_closes_and_disappears_leaks_nothing() -> None:
    async with served(TalksAfterHalfClose()) as (servicer, target, baseline):
        port = int(target.rsplit(":", 1)[1])
        async with (
            tcp_proxy(port) as proxy,
            grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel,
        ):
            stub = _stub(channel)
            # bidi: half-close, the server keeps talking, then the connection dies
            chat = stub.Bidi()
            await chat.write(Req(seq=1))
            await chat.done_writing()
            assert isinstance(await asyncio.wait_for(chat.read(), WAIT), Reply)
            await asyncio.wait_for(servicer.talking.wait(), WAIT)
            # client streaming: half-closed, response not yet read
            upload = stub.ClientStream()
            await upload.write(Req(seq=1))
            await upload.done_writing()
            proxy.cut()
            await asyncio.wait_for(servicer.send_failed.wait(), WAIT)
            await asyncio.wait_for(servicer.handler_returned.wait(), WAIT)
            assert await chat.code() is grpc.StatusCode.UNAVAILABLE
            await upload.code()  # over, one way or the other
        await back_to_baseline(target, baseline)


async def test_a_raw_client_writing_after_done_writing_harms_only_itself() -> None:
    """grpc.aio refuses the write on the client, so nothing of it reaches the server.

    (DATA after END_STREAM on the wire is an HTTP/2 protocol error that the C-core answers
    with RST_STREAM before any Python code runs; it is not reachable from a grpc client.)
    """
    async with served(Echo()) as (servicer, target, baseline):
        async with grpc.aio.insecure_channel(target) as channel:
            chat = _stub(channel).Bidi(timeout=WAIT)
            await chat.write(Req(seq=1))
            await chat.done_writing()
            with pytest.raises(asyncio.InvalidStateError, match="half closed"):
                await chat.write(Req(seq=2))
            reply = await chat.read()
            assert isinstance(reply, Reply)
            assert reply.seq == 1
            assert await chat.read() is grpc.aio.EOF
            assert await chat.code() is grpc.StatusCode.OK
        assert servicer.requests_seen == [Req(seq=1)]
        await back_to_baseline(target, baseline)
