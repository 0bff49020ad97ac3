"""Broadcast.serve() through real gRPC streams: ordering, joining late, policies, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections.abc import AsyncIterator, Iterator
from typing import Literal, TypeAlias

import grpc
import pytest

import grpcstream
from grpcstream import Broadcast
from grpcstream.testing import RunningServer, serve
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import (
    LogEntry,
    LogRequest,
)
from tests.support.batch_servicer import LOG_BATCHES
from tests.support.servers import WAIT, grpcstream_tasks

LogClient: TypeAlias = "grpcstream.StreamClient[logs_pb2_grpc.LogServiceAsyncStub]"
PADDING = "x" * 1000  # entries of ~1 KB: a few thousand overflow any flow-control window
# A client that must stay behind: no BDP probing, so its window stays at 64 KiB.
SMALL_WINDOW = (("grpc.http2.bdp_probe", 0),)
Policy: TypeAlias = Literal["drop_oldest", "disconnect", "block"]


class BroadcastLogs(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """StreamLogs serves ``log``; the request's ``service`` names the policy (default
    ``drop_oldest``), ``after_seq``/``last``/``limit`` go to ``serve()`` as they are."""

    def __init__(self, log: Broadcast[LogEntry], max_lag: int | None = None) -> None:
        self.log = log
        self.max_lag = max_lag
        self.joined = asyncio.Event()
        self.active = 0
        self.idle = asyncio.Event()
        self.changed = asyncio.Condition()

    async def wait_for_handlers(self, count: int) -> None:
        """Until ``count`` handlers run (each holds its cursor before it first waits)."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.active >= count)

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        policy: Policy = (
            "drop_oldest" if not request.service else request.service  # type: ignore[assignment]
        )
        self.active += 1
        self.idle.clear()
        self.joined.set()
        async with self.changed:
            self.changed.notify_all()
        try:
            await self.log.serve(
                stream,
                after=None if request.last else request.after_seq,
                last=request.last or None,
                policy=policy,
                max_lag=self.max_lag if policy != "block" else None,
                limit=request.limit or None,
            )
        finally:
            self.active -= 1
            if self.active == 0:
                self.idle.set()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    # These tests open up to 1,000 calls; free their grpc objects here rather than in
    # whichever later test the garbage collector happens to run.
    yield
    gc.collect()


def entry(seq: int, padded: bool = False) -> LogEntry:
    return LogEntry(seq=seq, message=PADDING if padded else "")


def client_for(running: RunningServer) -> LogClient:
    return running.client(logs_pb2_grpc.LogServiceStub, timeout=60.0)


@contextlib.asynccontextmanager
async def small_window_client(running: RunningServer) -> AsyncIterator[LogClient]:
    """A client on its own channel whose flow-control window stays at 64 KiB: it lags."""
    async with grpcstream.connect(running.target, options=SMALL_WINDOW) as channel:
        yield grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=60.0)


async def publish_all(log: Broadcast[LogEntry], total: int, yield_every: int | None = None) -> None:
    """Publish padded entries 1..total, then close the log.

    ``apublish()`` yields to the loop only while it waits for room, unless ``yield_every``
    makes it yield every that many entries, as a real publisher does now and then.
    """
    for seq in range(1, total + 1):
        await log.apublish(entry(seq, padded=True))
        if yield_every is not None and seq % yield_every == 0:
            await asyncio.sleep(0)
    await log.aclose()


async def seqs(client: LogClient, request: LogRequest) -> list[int]:
    async with client.server_stream(client.stub.StreamLogs, request) as entries:
        return [e.seq async for e in entries]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_100_grpc_subscribers_each_get_exactly_1_to_n() -> None:
    total = 500
    log = Broadcast(LogEntry, max_entries=total, key=lambda e: e.seq)
    async with serve(BroadcastLogs(log)) as running:  # type: ignore[abstract]
        client = client_for(running)
        readers = [
            asyncio.create_task(seqs(client, LogRequest(after_seq=0, service="block")))
            for _ in range(100)
        ]
        for seq in range(1, total + 1):
            await log.apublish(entry(seq))
            if seq % 50 == 0:
                await asyncio.sleep(0)
        await log.aclose()
        async with asyncio.timeout(60):
            results = await asyncio.gather(*readers)
    assert results == [list(range(1, total + 1))] * 100


async def test_a_subscriber_joining_mid_publish_after_k_gets_exactly_k_plus_1_to_n() -> None:
    total, k = 3_000, 500
    log = Broadcast(LogEntry, max_entries=total)
    servicer = BroadcastLogs(log)  # type: ignore[abstract]
    async with serve(servicer) as running:
        client = client_for(running)
        first = asyncio.create_task(seqs(client, LogRequest(after_seq=0)))
        async with asyncio.timeout(WAIT):
            await servicer.joined.wait()
        for seq in range(1, 1501):
            log.publish(entry(seq))
            if seq % 10 == 0:
                await asyncio.sleep(0)
        servicer.joined.clear()
        late = asyncio.create_task(seqs(client, LogRequest(after_seq=k)))
        async with asyncio.timeout(WAIT):
            await servicer.joined.wait()  # it has its cursor; publishing goes on meanwhile
        for seq in range(1501, total + 1):
            log.publish(entry(seq))
            if seq % 10 == 0:
                await asyncio.sleep(0)
        await log.aclose()
        async with asyncio.timeout(WAIT * 3):
            assert await late == list(range(k + 1, total + 1))
            assert await first == list(range(1, total + 1))


async def test_after_older_than_the_log_is_out_of_range_naming_the_oldest() -> None:
    log = Broadcast(LogEntry, max_entries=10)
    for seq in range(1, 101):
        log.publish(entry(seq))
    async with serve(BroadcastLogs(log)) as running:  # type: ignore[abstract]
        client = client_for(running)
        with pytest.raises(grpcstream.OutOfRange, match="the oldest entry held is 91") as info:
            await seqs(client, LogRequest(after_seq=42))
        assert info.value.code == grpc.StatusCode.OUT_OF_RANGE
        async with client.server_stream(client.stub.StreamLogs, LogRequest(last=3)) as tail:
            assert [(await anext(tail)).seq for _ in range(3)] == [98, 99, 100]


async def test_slow_drop_oldest_subscriber_skips_while_the_others_get_everything() -> None:
    total = 3_000
    log = Broadcast(LogEntry, max_entries=100)
    servicer = BroadcastLogs(log)  # type: ignore[abstract]
    async with serve(servicer) as running:
        fast = client_for(running)
        async with small_window_client(running) as slow:
            async with slow.server_stream(
                slow.stub.StreamLogs, LogRequest(after_seq=0, service="drop_oldest")
            ) as lagging:
                fast_task = asyncio.create_task(
                    seqs(fast, LogRequest(after_seq=0, service="block"))
                )
                async with asyncio.timeout(WAIT * 3):
                    await servicer.wait_for_handlers(2)
                    await publish_all(log, total, yield_every=10)  # paced by the fast one
                    got = [e.seq async for e in lagging]
                    assert await fast_task == list(range(1, total + 1))
    assert got == sorted(set(got))  # in order, no duplicate
    assert got[-1] == total
    assert len(got) < total - 100  # it lost entries instead of holding the others back


async def test_slow_disconnect_subscriber_ends_resource_exhausted_and_resumes() -> None:
    total = 3_000
    log = Broadcast(LogEntry, max_entries=total)
    servicer = BroadcastLogs(log, max_lag=100)  # type: ignore[abstract]
    async with serve(servicer) as running:
        fast = client_for(running)
        async with small_window_client(running) as slow:
            received: list[int] = []
            async with slow.server_stream(
                slow.stub.StreamLogs, LogRequest(after_seq=0, service="disconnect")
            ) as lagging:
                fast_task = asyncio.create_task(
                    seqs(fast, LogRequest(after_seq=0, service="block"))
                )
                async with asyncio.timeout(WAIT * 3):
                    await servicer.wait_for_handlers(2)
                    await publish_all(log, total, yield_every=10)
                    with pytest.raises(grpcstream.ResourceExhausted, match="resume after"):
                        async for e in lagging:
                            received.append(e.seq)
                    assert await fast_task == list(range(1, total + 1))
            assert received == list(range(1, len(received) + 1))
            assert 0 < len(received) < total
            resumed = await seqs(slow, LogRequest(after_seq=received[-1], service="block"))
    assert resumed == list(range(received[-1] + 1, total + 1))


async def test_slow_block_subscriber_holds_the_publisher_and_loses_nothing() -> None:
    total = 2_000
    log = Broadcast(LogEntry, max_entries=100)
    servicer = BroadcastLogs(log)  # type: ignore[abstract]
    async with serve(servicer) as running:
        fast = client_for(running)
        async with small_window_client(running) as slow:
            async with (
                slow.server_stream(
                    slow.stub.StreamLogs, LogRequest(after_seq=0, service="block")
                ) as lagging,
                # Lossless too, so that a loaded machine cannot make it drop: it must get
                # every entry published while the slow one holds the publisher back.
                fast.server_stream(
                    fast.stub.StreamLogs, LogRequest(after_seq=0, service="block")
                ) as others,
            ):
                async with asyncio.timeout(WAIT * 3):
                    await servicer.wait_for_handlers(2)
                    publisher = asyncio.create_task(publish_all(log, total))
                    fast_seqs: list[int] = []
                    async for e in others:
                        fast_seqs.append(e.seq)
                        # apublish() only yields while it waits for room, so a publisher
                        # that is not done is held back by the slow subscriber.
                        if e.seq == log.statistics().newest and not publisher.done():
                            break  # caught up, and the publisher waits for the slow one
                    assert not publisher.done()
                    assert fast_seqs == list(range(1, len(fast_seqs) + 1))
                    assert len(fast_seqs) < total
                    got = [e.seq async for e in lagging]  # reading releases the publisher
                    await publisher
    assert got == list(range(1, total + 1))


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_1000_grpc_subscribers_cancelling_at_random_leave_nothing_behind() -> None:
    log = Broadcast(LogEntry, max_entries=10_000)
    servicer = BroadcastLogs(log)  # type: ignore[abstract]
    rng = random.Random(1000)
    async with serve(servicer) as running:
        client = client_for(running)

        async def watch(stop_after: int) -> None:
            request = LogRequest(after_seq=0, service=rng.choice(["drop_oldest", "disconnect"]))
            async with client.server_stream(client.stub.StreamLogs, request) as entries:
                async for e in entries:
                    if e.seq >= stop_after:
                        return  # leaving the block cancels the RPC

        watchers = [asyncio.create_task(watch(rng.randrange(1, 300))) for _ in range(1000)]
        async with asyncio.timeout(60):
            for seq in range(1, 301):
                log.publish(entry(seq))
                await asyncio.sleep(0)
                if seq % 30 == 0:  # and some are cancelled from outside, wherever they are
                    for task in rng.sample(watchers, 50):
                        task.cancel()
            await asyncio.wait(watchers)
            await servicer.idle.wait()  # every handler has returned
        assert log.statistics().subscribers == 0
        # No task is left: no writer, no producer, no drain watch (one runs per drain
        # event while a subscription is served under it).
        assert grpcstream_tasks() == set()


async def test_a_drain_ends_served_streams_unavailable_naming_the_position() -> None:
    log = Broadcast(LogEntry, key=lambda e: e.seq)
    for seq in range(1, 6):
        log.publish(entry(seq))
    server = grpcstream.StreamServer("127.0.0.1:0", grace=5.0)
    servicer = BroadcastLogs(log)  # type: ignore[abstract]
    server.add(servicer)
    await server.start()
    try:
        async with grpcstream.connect(f"127.0.0.1:{server.port}") as channel:
            client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=WAIT)
            received: list[int] = []
            with pytest.raises(grpcstream.Unavailable, match="resume after position 5"):
                async with client.server_stream(
                    client.stub.StreamLogs, LogRequest(after_seq=0)
                ) as entries:
                    async for e in entries:
                        received.append(e.seq)
                        if e.seq == 5:  # caught up: the handler now waits for entries
                            stopping = asyncio.create_task(server.stop())
            assert received == [1, 2, 3, 4, 5]
            async with asyncio.timeout(WAIT):
                await stopping
        assert log.statistics().subscribers == 0
    finally:
        await server.stop(grace=0)


class BatchedBroadcast(grpcstream.StreamServicer, logs_pb2_grpc.LogBatchServiceServicer):
    """StreamLogBatches serves ``log`` with coalescing: entries travel in LogBatch messages."""

    def __init__(self, log: Broadcast[LogEntry]) -> None:
        self.log = log

    @grpcstream.server_streaming(batching=LOG_BATCHES)
    async def StreamLogBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        await self.log.serve(stream, after=request.after_seq, limit=request.limit or None)


async def test_serve_works_with_coalescing_and_resume_after_k() -> None:
    log = Broadcast(LogEntry, key=lambda e: e.seq)
    for seq in range(1, 1001):
        log.publish(entry(seq))
    async with serve(BatchedBroadcast(log)) as running:  # type: ignore[abstract]
        client = running.client(logs_pb2_grpc.LogBatchServiceStub, timeout=WAIT)
        request = LogRequest(after_seq=250, limit=750)
        async with client.server_stream(
            client.stub.StreamLogBatches, request, batching=LOG_BATCHES
        ) as entries:
            assert [e.seq async for e in entries] == list(range(251, 1001))
