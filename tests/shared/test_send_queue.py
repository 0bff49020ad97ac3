"""SendQueue on its own: one writer, bounded, backpressure, half-close, failure. No gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from grpcstream import SendQueue, StreamClosedError, Unavailable, WouldBlock
from tests.support.servers import WAIT, grpcstream_tasks


class Sink:
    """A write target that records messages and can be paused, failed, or checked for overlap."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.writing = False
        self.overlaps = 0
        self.half_closed = 0
        self.fail_with: BaseException | None = None
        self.blocked = asyncio.Event()

    async def write(self, message: int) -> None:
        if self.writing:
            self.overlaps += 1
        self.writing = True
        try:
            if not self.gate.is_set():
                self.blocked.set()
            await self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            self.received.append(message)
        finally:
            self.writing = False

    async def done_writing(self) -> None:
        self.half_closed += 1


async def until(condition: Callable[[], bool], steps: int = 100) -> None:
    """Run the event loop one step at a time until ``condition`` holds (deterministic, bounded)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def make_queue(sink: Sink, max_size: int = 4) -> SendQueue[int]:
    return SendQueue(sink.write, done_writing=sink.done_writing, max_size=max_size)


async def test_many_producers_one_writer_keeps_each_producers_order() -> None:
    sink = Sink()
    queue = make_queue(sink, max_size=8)

    async def produce(producer: int) -> None:
        for n in range(200):
            await queue.send(producer * 1000 + n)

    await asyncio.wait_for(asyncio.gather(*(produce(p) for p in range(16))), WAIT)
    await asyncio.wait_for(queue.close(), WAIT)
    assert sink.overlaps == 0
    assert len(sink.received) == 16 * 200
    for producer in range(16):
        mine = [m for m in sink.received if m // 1000 == producer]
        assert mine == sorted(mine)
        assert len(mine) == 200
    assert queue.statistics().sent == 3200


async def test_send_waits_when_full_and_send_nowait_raises_would_block() -> None:
    sink = Sink()
    sink.gate.clear()
    queue = make_queue(sink, max_size=2)
    await queue.send(1)
    await asyncio.wait_for(sink.blocked.wait(), WAIT)
    await queue.send(2)
    assert queue.statistics().queued == 2
    with pytest.raises(WouldBlock):
        queue.send_nowait(3)
    blocked_send = asyncio.create_task(queue.send(3))
    await until(lambda: queue.statistics().waiting_senders == 1)
    assert not blocked_send.done()
    assert queue.statistics().queued <= queue.statistics().max_size
    sink.gate.set()
    await asyncio.wait_for(blocked_send, WAIT)
    await asyncio.wait_for(queue.close(), WAIT)
    assert sink.received == [1, 2, 3]


async def test_statistics_never_exceed_max_size() -> None:
    sink = Sink()
    queue = make_queue(sink, max_size=3)
    peak = 0

    async def produce() -> None:
        nonlocal peak
        for n in range(300):
            await queue.send(n)
            peak = max(peak, queue.statistics().queued)

    await asyncio.wait_for(asyncio.gather(produce(), produce()), WAIT)
    await asyncio.wait_for(queue.close(), WAIT)
    assert peak <= 3
    assert queue.statistics().sent == 600


async def test_close_is_idempotent_waits_for_queued_and_half_closes_once() -> None:
    sink = Sink()
    sink.gate.clear()
    queue = make_queue(sink)
    for n in range(3):
        queue.send_nowait(n)
    closers = [asyncio.create_task(queue.close()) for _ in range(3)]
    await asyncio.wait_for(sink.blocked.wait(), WAIT)
    assert not any(c.done() for c in closers)
    sink.gate.set()
    await asyncio.wait_for(asyncio.gather(*closers), WAIT)
    await queue.close()
    assert sink.received == [0, 1, 2]
    assert sink.half_closed == 1


async def test_send_after_close_raises_and_sends_nothing() -> None:
    sink = Sink()
    queue = make_queue(sink)
    await queue.send(1)
    await asyncio.wait_for(queue.close(), WAIT)
    with pytest.raises(StreamClosedError, match="close_send") as from_send:
        await queue.send(2)
    with pytest.raises(StreamClosedError) as from_send_nowait:
        queue.send_nowait(3)
    assert str(from_send_nowait.value) == str(from_send.value)  # one message for both
    assert sink.received == [1]


async def test_close_without_any_send_still_half_closes() -> None:
    sink = Sink()
    queue = make_queue(sink)
    await asyncio.wait_for(queue.close(), WAIT)
    assert sink.half_closed == 1
    assert sink.received == []


async def test_fail_wakes_blocked_senders_with_the_error() -> None:
    sink = Sink()
    sink.gate.clear()
    queue = make_queue(sink, max_size=1)
    await queue.send(1)
    await asyncio.wait_for(sink.blocked.wait(), WAIT)
    assert grpcstream_tasks()  # the writer, blocked in write()
    waiting = asyncio.create_task(queue.send(2))
    await until(lambda: queue.statistics().waiting_senders == 1)
    error = Unavailable("peer went away")
    queue.fail(error)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(waiting, WAIT)
    with pytest.raises(Unavailable):
        await queue.send(3)
    with pytest.raises(Unavailable):
        await queue.close()
    await asyncio.wait_for(queue.aclose(), WAIT)
    assert not grpcstream_tasks(), "aclose() returned with the writer task still running"


async def test_write_error_is_translated_and_reaches_senders() -> None:
    sink = Sink()
    sink.fail_with = ConnectionResetError("boom")
    queue = SendQueue(
        sink.write,
        translate_error=lambda exc: Unavailable(f"translated {type(exc).__name__}"),
        max_size=2,
    )
    await queue.send(1)
    await until(lambda: queue.error is not None)  # the writer met the error and ended
    with pytest.raises(Unavailable, match="translated ConnectionResetError"):
        await queue.send(2)
    assert isinstance(queue.error, Unavailable)


async def test_cancelled_send_queues_nothing() -> None:
    sink = Sink()
    sink.gate.clear()
    queue = make_queue(sink, max_size=1)
    await queue.send(1)
    await asyncio.wait_for(sink.blocked.wait(), WAIT)
    waiting = asyncio.create_task(queue.send(99))
    await until(lambda: queue.statistics().waiting_senders == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    sink.gate.set()
    await asyncio.wait_for(queue.close(), WAIT)
    assert sink.received == [1]


async def test_cancelled_waiter_hands_its_room_to_the_next() -> None:
    sink = Sink()
    sink.gate.clear()
    queue = make_queue(sink, max_size=1)
    await queue.send(1)
    await asyncio.wait_for(sink.blocked.wait(), WAIT)
    first = asyncio.create_task(queue.send(2))
    second = asyncio.create_task(queue.send(3))
    await until(lambda: queue.statistics().waiting_senders == 2)
    sink.gate.set()
    # Let the writer finish message 1 and grant room to `first`, then cancel `first`
    # before it runs: its room must pass to `second`.
    await until(lambda: queue.statistics().waiting_senders == 1)
    assert not first.done()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, WAIT)
    await asyncio.wait_for(queue.close(), WAIT)
    assert sink.received == [1, 3]


async def test_aclose_cancels_the_writer_and_refuses_sends() -> None:
    sink = Sink()
    sink.gate.clear()
    queue = make_queue(sink)
    await queue.send(1)
    await asyncio.wait_for(sink.blocked.wait(), WAIT)
    await asyncio.wait_for(queue.aclose(), WAIT)
    with pytest.raises(StreamClosedError):
        await queue.send(2)
    assert sink.received == []


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_size_must_be_a_positive_int(bad: object) -> None:
    sink = Sink()
    with pytest.raises(ValueError, match="max_size"):
        SendQueue(sink.write, max_size=bad)  # type: ignore[arg-type]
