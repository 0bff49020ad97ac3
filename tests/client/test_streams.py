"""StreamClient against plain grpc.aio servers: one writer, backpressure, half-close, exit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

import grpcstream
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import (
    WAIT,
    Context,
    dummy_client,
    grpcstream_tasks,
    raw_server,
    wait_for,
    wait_until,
)

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
    """Documents raw grpc.aio: two tasks writing to one call break it (docs: pitfalls)."""

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        async for _ in requests:
            pass
        return Reply()

    async with raw_server(client_stream=handler) as target, grpc.aio.insecure_channel(target) as ch:
        from grpcstream_demo import dummy_pb2_grpc

        call = dummy_pb2_grpc.DummyServiceStub(ch).ClientStream()

        async def produce(producer: int) -> None:
            for seq in range(PER_PRODUCER):
                await call.write(Req(producer=producer, seq=seq))

        results = await asyncio.gather(
            *(produce(p) for p in range(PRODUCERS)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors, "raw grpc.aio accepted concurrent writes"
        assert (
            any(
                isinstance(e, grpc.aio.AioRpcError) and e.code() is grpc.StatusCode.INTERNAL
                for e in errors
            )
            or call.done()
        )
        call.cancel()


async def test_send_waits_when_queue_is_full_and_send_nowait_raises() -> None:
    release = asyncio.Event()
    received: list[Req] = []

    async def slow_reader(requests: AsyncIterator[Req], context: Context) -> Reply:
        await wait_for(release)
        await _collect(requests, received)
        return Reply(seq=len(received))

    big = b"x" * 256 * 1024  # a few of these fill HTTP/2 flow-control windows
    async with raw_server(client_stream=slow_reader) as target, dummy_client(target) as client:
        async with client.client_stream(client.stub.ClientStream, max_queued=4) as upload:
            sent = 0

            async def fill() -> None:
                nonlocal sent
                while True:
                    await upload.send(Req(seq=sent, payload=big))
                    sent += 1

            filler = asyncio.create_task(fill())
            async with asyncio.timeout(WAIT):
                while upload.statistics().waiting_senders == 0:  # noqa: ASYNC110 - a status poll
                    await asyncio.sleep(0.01)
            stats = upload.statistics()
            assert stats.queued <= stats.max_size == 4
            assert not filler.done()
            with pytest.raises(grpcstream.WouldBlock):
                upload.send_nowait(Req(seq=999_999))
            filler.cancel()
            with pytest.raises(asyncio.CancelledError):
                await filler
            release.set()
            reply = await upload.close_and_receive()
    assert reply.seq == sent
    assert [r.seq for r in received] == list(range(sent))


async def test_statistics_never_exceed_the_bound() -> None:
    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        count = 0
        async for _ in requests:
            count += 1
        return Reply(seq=count)

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        async with client.client_stream(client.stub.ClientStream, max_queued=8) as upload:
            peak = 0

            async def produce() -> None:
                for seq in range(500):
                    await upload.send(Req(seq=seq))

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, upload.statistics().queued)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            async with asyncio.TaskGroup() as group:
                for _ in range(4):
                    group.create_task(produce())
            watcher.cancel()
            reply = await upload.close_and_receive()
    assert reply.seq == 2000
    assert 0 < peak <= 8


async def test_default_queue_bound_is_documented_constant() -> None:
    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        return Reply()

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        async with client.client_stream(client.stub.ClientStream) as upload:
            assert upload.statistics().max_size == grpcstream.DEFAULT_MAX_QUEUED == 64
            await upload.close_and_receive()


async def test_close_send_is_idempotent_and_flushes_everything() -> None:
    received: list[Req] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        await _collect(requests, received)
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
    server_saw_cancel = asyncio.Event()

    async def echo(requests: AsyncIterator[Req], context: Context) -> None:
        try:
            async for request in requests:
                await context.write(Reply(seq=request.seq))
            # grpc.aio ends the request iterator on cancel too; only the task being
            # cancelled proves that the client cancelled rather than half-closed.
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            server_saw_cancel.set()
            raise

    async with raw_server(bidi=echo) as target, dummy_client(target) as client:
        async with client.bidi_stream(client.stub.Bidi) as chat:
            await chat.send(Req(seq=1))
            async for reply in chat:
                assert reply.seq == 1
                break
        assert chat.done()
        assert await chat.code() is grpc.StatusCode.CANCELLED
        assert grpcstream_tasks() == set()
        await wait_for(server_saw_cancel, timeout=1.0)


async def test_iterating_from_two_tasks_is_refused() -> None:
    async def endless(request: Req, context: Context) -> None:
        await asyncio.Event().wait()

    async with raw_server(server_stream=endless) as target, dummy_client(target) as client:
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            first = asyncio.create_task(anext(replies))
            await wait_until(lambda: replies._reading)  # the first reader is waiting
            with pytest.raises(grpcstream.BusyStreamError):
                await anext(replies)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first


async def test_stream_must_be_entered_before_use() -> None:
    async def handler(request: Req, context: Context) -> None:
        return None

    async with raw_server(server_stream=handler) as target, dummy_client(target) as client:
        replies = client.server_stream(client.stub.ServerStream, Req())
        with pytest.raises(grpcstream.UsageError, match="async with"):
            await anext(replies)
        async with replies:
            assert [r async for r in replies] == []
        with pytest.raises(grpcstream.UsageError, match="already used"):
            async with replies:
                pass


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


def test_grpc_still_exposes_the_call_status_grpcstream_reads_synchronously() -> None:
    """_send_calls reads the cython call's status in a done-callback; fail loudly if gone."""
    from grpc._cython import cygrpc  # type: ignore[attr-defined]

    assert "_status" in dir(cygrpc._AioCall)
