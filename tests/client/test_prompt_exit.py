"""Leaving a stream's block is prompt whatever its producers do, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Iterator

import pytest

import grpcstream
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import Echo
from tests.support.servers import WAIT, dummy_client, grpcstream_tasks, serving, wait_until

BIG = b"b" * 64 * 1024
PROMPT = 1.0  # the bound for leaving a block, in seconds


async def _produce_for_ever(chat: grpcstream.BidiStream[Req, Reply]) -> None:
    seq = 0
    while True:
        await chat.send(Req(seq=seq, payload=BIG))
        seq += 1


class _Leave(Exception):
    pass


@pytest.mark.parametrize("how", ["break", "exception", "cancel"])
@pytest.mark.parametrize("timeout", [None, 60.0], ids=["no-deadline", "deadline"])
async def test_leaving_a_bidi_block_with_a_blocked_producer_takes_under_a_second(
    timeout: float | None, how: str
) -> None:
    async with serving(Echo()) as (_, target), dummy_client(target) as client:
        loop = asyncio.get_running_loop()
        blocked = asyncio.Event()
        left_at = 0.0

        async def converse() -> None:
            nonlocal left_at
            async with client.bidi_stream(client.stub.Bidi, timeout=timeout) as chat:
                chat.spawn(_produce_for_ever(chat))
                async for _ in chat:
                    # Nobody reads the echoes from now on: the server blocks, then the
                    # producer blocks in send().
                    await asyncio.wait_for(_blocked(chat), WAIT)
                    blocked.set()
                    if how == "cancel":
                        await asyncio.Event().wait()  # until the task is cancelled
                    left_at = loop.time()
                    if how == "exception":
                        raise _Leave
                    break
            assert chat.done()

        task = asyncio.create_task(converse())
        await asyncio.wait_for(blocked.wait(), WAIT)
        if how == "cancel":
            left_at = loop.time()
            task.cancel()
        await asyncio.wait((task,), timeout=WAIT)
        assert task.done()
        assert loop.time() - left_at < PROMPT
        if how == "cancel":
            assert task.cancelled()
        elif how == "exception":
            assert isinstance(task.exception(), _Leave)
        else:
            assert task.exception() is None
        assert client.open_streams == 0
    assert grpcstream_tasks() == set()


async def _blocked(chat: grpcstream.BidiStream[Req, Reply]) -> None:
    while chat.statistics().waiting_senders == 0:  # noqa: ASYNC110 - a status, no event exists
        await asyncio.sleep(0.01)


@pytest.fixture
def no_gc() -> Iterator[None]:
    """open_streams must reach 0 by bookkeeping, not because the collector ran."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


STORM = 1000


class EchoAndCountForEver(Echo):
    """``Echo``, and a ``ServerStream`` that sends 1, 2, 3, ... until the client goes."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        seq = 0
        while True:
            seq += 1
            await stream.send(Reply(seq=seq))


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.usefixtures("no_gc")
async def test_a_storm_of_cancelling_clients_leaves_nothing_behind() -> None:
    """1,000 tasks cancelled in send(), close_send(), iteration and mid-spawn: none hangs."""
    rng = random.Random(13)
    async with serving(EchoAndCountForEver()) as (_, target), dummy_client(target) as client:
        started = 0

        async def upload() -> None:
            nonlocal started
            async with client.client_stream(client.stub.ClientStream, max_queued=1) as up:
                started += 1
                while True:
                    await up.send(Req(payload=BIG))  # blocks: the server reads slowly

        async def half_close() -> None:
            nonlocal started
            async with client.client_stream(client.stub.ClientStream, max_queued=1) as up:
                started += 1
                for _ in range(8):
                    await up.send(Req(payload=BIG))
                await up.close_send()
                await up.close_and_receive()

        async def chat() -> None:
            nonlocal started
            async with client.bidi_stream(client.stub.Bidi, max_queued=1) as bidi:
                started += 1
                bidi.spawn(_produce_for_ever(bidi))
                async for _ in bidi:
                    pass

        async def follow() -> None:
            nonlocal started
            async with client.server_stream(client.stub.ServerStream, Req()) as s:
                started += 1
                async for _ in s:
                    pass

        kinds = (upload, half_close, chat, follow)
        tasks = [asyncio.create_task(kinds[i % len(kinds)]()) for i in range(STORM)]
        await wait_until(lambda: started == STORM, timeout=120)
        assert client.open_streams > STORM // 2  # the half-closing ones may have finished
        rng.shuffle(tasks)
        for task in tasks:
            if rng.random() < 0.3:
                await asyncio.sleep(0)  # cancel some mid-write, some mid-exit
            task.cancel()
        done, pending = await asyncio.wait(tasks, timeout=120)
        assert not pending, f"{len(pending)} of {STORM} cancelled clients hang"
        for task in done:
            assert (
                task.cancelled()
                or task.exception() is None
                or isinstance(task.exception(), grpcstream.GrpcStreamError)
            )
        assert client.open_streams == 0
        assert started > 0
    assert grpcstream_tasks() == set()
