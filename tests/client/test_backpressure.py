"""The send queue is bounded: send() waits when it is full and send_nowait() raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import grpcstream
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import BIG, never_reads
from tests.support.servers import WAIT, Context, dummy_client, raw_server, wait_for


async def test_send_waits_when_queue_is_full_and_send_nowait_raises() -> None:
    release = asyncio.Event()
    received: list[Req] = []

    async def slow_reader(requests: AsyncIterator[Req], context: Context) -> Reply:
        await wait_for(release)
        async for request in requests:
            received.append(request)
        return Reply(seq=len(received))

    async with raw_server(client_stream=slow_reader) as target, dummy_client(target) as client:
        async with client.client_stream(client.stub.ClientStream, max_queued=4) as upload:
            sent = 0

            async def fill() -> None:
                nonlocal sent
                while True:
                    await upload.send(Req(seq=sent, payload=BIG))
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


async def test_the_default_queue_holds_default_max_queued_messages() -> None:
    """Without max_queued=, exactly DEFAULT_MAX_QUEUED (64) messages fit; one more would block.

    No await separates the send_nowait() calls, so the writer cannot take any message
    off the queue in between: what fits is the bound itself.
    """
    assert grpcstream.DEFAULT_MAX_QUEUED == 64  # the documented value
    async with raw_server(client_stream=never_reads) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.Cancelled):  # the server never reads: end the call
            async with client.client_stream(client.stub.ClientStream) as upload:
                for seq in range(grpcstream.DEFAULT_MAX_QUEUED):
                    upload.send_nowait(Req(seq=seq))
                with pytest.raises(grpcstream.WouldBlock):
                    upload.send_nowait(Req(seq=grpcstream.DEFAULT_MAX_QUEUED))
                stats = upload.statistics()
                assert stats.queued == stats.max_size == grpcstream.DEFAULT_MAX_QUEUED
                upload.cancel()
