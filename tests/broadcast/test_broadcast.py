"""Broadcast and Subscription without gRPC: ordering, replay, policies, bounds, cleanup."""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
import weakref
from typing import Literal, TypeAlias

import pytest

import grpcstream
from grpcstream import Broadcast, Subscription
from grpcstream_demo.logs_pb2 import LogEntry
from tests.support.servers import WAIT

Policy: TypeAlias = Literal["drop_oldest", "disconnect", "block"]


def entries(count: int, start: int = 1) -> list[LogEntry]:
    return [LogEntry(seq=seq) for seq in range(start, start + count)]


async def read(sub: Subscription[LogEntry], count: int) -> list[int]:
    async with asyncio.timeout(WAIT):
        return [(await anext(sub)).seq for _ in range(count)]


async def test_positions_are_numbered_or_taken_from_the_key() -> None:
    numbered = Broadcast(LogEntry)
    assert [numbered.publish(LogEntry(seq=9)) for _ in range(3)] == [1, 2, 3]
    keyed = Broadcast(LogEntry, key=lambda e: e.seq)
    assert [keyed.publish(e) for e in entries(3, start=10)] == [10, 11, 12]
    with pytest.raises(ValueError, match="positions must increase"):
        keyed.publish(LogEntry(seq=12))
    assert keyed.statistics().newest == 12  # the rejected entry was not published


async def test_bad_input_is_rejected_with_clear_errors() -> None:
    log = Broadcast(LogEntry, max_entries=4, max_bytes=100)
    with pytest.raises(TypeError, match="publish\\(\\) takes LogEntry, not str"):
        log.publish("hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot fit max_bytes=100"):
        log.publish(LogEntry(message="x" * 200))
    with pytest.raises(ValueError, match="max_entries"):
        Broadcast(LogEntry, max_entries=0)
    with pytest.raises(TypeError, match="size="):
        Broadcast(str, max_bytes=10)
    with pytest.raises(ValueError, match="not both"):
        log.subscribe(after=1, last=1)
    with pytest.raises(ValueError, match="policy"):
        log.subscribe(policy="fastest")  # type: ignore[arg-type]
    assert log.statistics().published == 0


async def test_the_log_is_bounded_in_entries_and_bytes() -> None:
    log = Broadcast(LogEntry, max_entries=100, max_bytes=1000)
    size = LogEntry(seq=1, message="x" * 90).ByteSize()
    for seq in range(1, 1001):
        log.publish(LogEntry(seq=seq, message="x" * 90))
    stats = log.statistics()
    assert stats.bytes <= 1000
    assert stats.entries == 1000 // size
    assert (stats.oldest, stats.newest) == (1001 - stats.entries, 1000)
    assert stats.evicted == 1000 - stats.entries
    by_count = Broadcast(LogEntry, max_entries=100)
    for entry in entries(5000):
        by_count.publish(entry)
    assert by_count.statistics()[:4] == (100, 0, 4901, 5000)


async def test_subscriber_gets_entries_after_its_position_then_live_ones() -> None:
    log = Broadcast(LogEntry, key=lambda e: e.seq)
    for entry in entries(10):
        log.publish(entry)
    async with log.subscribe(after=7) as sub:
        assert await read(sub, 3) == [8, 9, 10]
        reader = asyncio.create_task(read(sub, 2))
        await asyncio.sleep(0)  # the reader parks; nothing is lost by publishing now
        log.publish(LogEntry(seq=11))
        log.publish(LogEntry(seq=12))
        assert await reader == [11, 12]
        assert sub.position == 12


async def test_live_only_and_last_n() -> None:
    log = Broadcast(LogEntry)
    for entry in entries(50):
        log.publish(entry)
    async with log.subscribe() as live, log.subscribe(last=5) as tail:
        assert live.position == 50
        log.publish(LogEntry(seq=51))
        assert await read(live, 1) == [51]
        assert await read(tail, 6) == [46, 47, 48, 49, 50, 51]
    async with log.subscribe(last=500) as everything:  # more than held: all of it
        assert await read(everything, 1) == [1]


async def test_after_older_than_the_log_raises_out_of_range_naming_the_oldest() -> None:
    log = Broadcast(LogEntry, max_entries=10, key=lambda e: e.seq)
    for entry in entries(100):
        log.publish(entry)
    with pytest.raises(grpcstream.OutOfRange, match="the oldest entry held is 91"):
        async with log.subscribe(after=50):
            pass
    async with log.subscribe(after=90) as exact:  # the entry just before the oldest: fine
        assert await read(exact, 1) == [91]
        assert exact.dropped == 0
    async with log.subscribe(after=50, on_gap="oldest") as gap:
        assert gap.dropped == 40  # 51..90 were missed, and it says so
        assert await read(gap, 2) == [91, 92]
    assert log.statistics().subscribers == 0


async def test_after_newer_than_the_log_waits_for_the_entries_after_it() -> None:
    log = Broadcast(LogEntry, key=lambda e: e.seq)
    log.publish(LogEntry(seq=1))
    async with log.subscribe(after=5) as sub:
        for entry in entries(8, start=2):
            log.publish(entry)
        assert await read(sub, 3) == [6, 7, 8]


async def test_drop_oldest_skips_ahead_and_counts_while_others_get_everything() -> None:
    log = Broadcast(LogEntry, max_entries=1000)
    async with (
        log.subscribe(policy="drop_oldest", max_lag=10) as slow,
        log.subscribe(policy="drop_oldest") as fast,
    ):
        for entry in entries(500):
            log.publish(entry)  # never waits, never raises
        assert await read(slow, 10) == list(range(491, 501))
        assert slow.dropped == 490
        assert slow.statistics().lag == 0
        assert await read(fast, 500) == list(range(1, 501))
        assert fast.dropped == 0


async def test_drop_oldest_past_the_log_skips_to_the_oldest_held() -> None:
    log = Broadcast(LogEntry, max_entries=100)
    async with log.subscribe() as slow:
        for entry in entries(1000):
            log.publish(entry)
        assert await read(slow, 1) == [901]
        assert slow.dropped == 900


async def test_disconnect_ends_the_slow_subscriber_with_resource_exhausted() -> None:
    log = Broadcast(LogEntry, max_entries=1000)
    async with (
        log.subscribe(policy="disconnect", max_lag=50) as slow,
        log.subscribe(policy="disconnect") as fast,
    ):
        for entry in entries(20):
            log.publish(entry)
        assert await read(slow, 20) == list(range(1, 21))
        for entry in entries(100, start=21):
            log.publish(entry)
        with pytest.raises(grpcstream.ResourceExhausted, match="resume after position 20"):
            await anext(slow)
        assert await read(fast, 120) == list(range(1, 121))
        assert log.statistics().subscribers == 1  # the disconnected cursor is gone


async def test_block_makes_the_publisher_wait_for_the_slowest() -> None:
    log = Broadcast(LogEntry, max_entries=10)
    async with log.subscribe(policy="block") as slow, log.subscribe() as other:
        for entry in entries(10):
            log.publish(entry)
        with pytest.raises(grpcstream.WouldBlock):
            log.publish(LogEntry(seq=11))  # would evict entry 1, which slow has not read
        publisher = asyncio.create_task(log.apublish(LogEntry(seq=11)))
        assert await read(other, 10) == list(range(1, 11))  # others keep reading
        assert not publisher.done()
        assert await read(slow, 1) == [1]
        async with asyncio.timeout(WAIT):
            assert await publisher == 11
        assert await read(slow, 10) == list(range(2, 12))
        assert slow.dropped == 0


async def test_block_with_max_lag_and_cancelled_apublish_publishes_nothing() -> None:
    log = Broadcast(LogEntry, max_entries=100)
    async with log.subscribe(policy="block", max_lag=3):
        for entry in entries(3):
            log.publish(entry)
        with pytest.raises(grpcstream.WouldBlock):
            log.publish(LogEntry(seq=4))  # the block subscriber is max_lag behind
        waiting = asyncio.create_task(log.apublish(LogEntry(seq=4)))
        await asyncio.sleep(0)  # one step: apublish() runs until it waits for room
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert log.statistics().newest == 3
    log.publish(LogEntry(seq=4))  # the block subscriber left: nothing holds the log back


async def test_aclose_delivers_what_was_published_then_ends_every_subscription() -> None:
    log = Broadcast(LogEntry)
    async with log.subscribe(after=0) as sub, log.subscribe(policy="block") as blocker:
        waiter = asyncio.create_task(read(blocker, 1))
        for entry in entries(3):
            log.publish(entry)
        await log.aclose()
        assert [entry.seq async for entry in sub] == [1, 2, 3]
        assert await waiter == [1]
    with pytest.raises(grpcstream.StreamClosedError):
        log.publish(LogEntry())
    await log.aclose()  # idempotent


async def test_iterating_without_async_with_frees_the_cursor_at_the_end() -> None:
    log = Broadcast(LogEntry)
    for entry in entries(3):
        log.publish(entry)
    sub = log.subscribe(after=0)
    assert await read(sub, 1) == [1]
    assert log.statistics().subscribers == 1
    await log.aclose()
    assert [entry.seq async for entry in sub] == [2, 3]
    assert log.statistics().subscribers == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_100_subscribers_get_exactly_1_to_n_of_100k_entries() -> None:
    total, readers = 100_000, 100
    log = Broadcast(LogEntry, max_entries=1_000)
    policies: list[Policy] = ["block", "disconnect"]
    subs = [log.subscribe(after=0, policy=policies[i % 2]) for i in range(readers)]

    async def consume(sub: Subscription[LogEntry]) -> tuple[int, bool]:
        expected = 1
        async with sub:
            async for entry in sub:
                if entry.seq != expected:
                    return expected, False
                expected += 1
        return expected - 1, sub.dropped == 0

    async def produce() -> None:
        for seq in range(1, total + 1):
            # Block subscribers pace the publisher; disconnect ones (max_lag: the log)
            # keep up because every publish that would outrun them waits too.
            await log.apublish(LogEntry(seq=seq))
            if seq % 500 == 0:
                await asyncio.sleep(0)
        await log.aclose()

    consumers = [asyncio.create_task(consume(sub)) for sub in subs]
    await produce()
    results = await asyncio.gather(*consumers)
    assert results == [(total, True)] * readers


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_1000_subscribers_cancelled_at_random_points_leave_nothing_behind() -> None:
    log = Broadcast(LogEntry, max_entries=10_000)
    rng = random.Random(17)
    subs: list[weakref.ref[Subscription[LogEntry]]] = []
    before_tasks = asyncio.all_tasks()

    async def consume(stop_after: int) -> None:
        sub = log.subscribe(after=0, policy=rng.choice(["drop_oldest", "disconnect", "block"]))
        subs.append(weakref.ref(sub))
        async with sub:
            async for entry in sub:
                if entry.seq >= stop_after:
                    await asyncio.sleep(3600)  # parked somewhere else: cancelled there

    gc.collect()
    tracemalloc.start(3)  # deep enough to see grpcstream frames under asyncio and weakref
    try:
        baseline = tracemalloc.take_snapshot()
        tasks = [asyncio.create_task(consume(rng.randrange(1, 200))) for _ in range(1000)]
        for seq in range(1, 201):
            await log.apublish(LogEntry(seq=seq))
            if seq % 20 == 0:
                await asyncio.sleep(0)
                victims = rng.sample(tasks, 100)  # waiting, reading, or parked elsewhere
                for task in victims:
                    task.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=WAIT)
        assert all(task.done() for task in tasks)
        del tasks, victims, task  # done tasks keep their frames (and cursors) in tracebacks
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert asyncio.all_tasks() == before_tasks  # no task left behind
    assert log.statistics().subscribers == 0  # no cursor left behind
    assert all(ref() is None for ref in subs)  # every subscription was freed
    # No block subscriber is left holding the log back: a full log's worth is published
    # at once (publish() raises WouldBlock when a block subscriber has not read).
    for seq in range(201, 201 + log.statistics().max_entries):
        log.publish(LogEntry(seq=seq))
    # What grpcstream's code allocated and still holds: the log's list of 200 references
    # and small tables, plus asyncio's free list of future iterators (at most 255 of 40
    # bytes, kept for reuse); nothing per subscriber (1,000 subscriptions of ~400 bytes
    # each, or their waiters, would be far more than this bound).
    ours = [tracemalloc.Filter(True, "*/grpcstream/_*", all_frames=True)]
    stats = after.filter_traces(ours).compare_to(baseline.filter_traces(ours), "lineno")
    grown = sum(stat.size_diff for stat in stats)
    assert grown < 24_000, [str(stat) for stat in stats[:5]]
