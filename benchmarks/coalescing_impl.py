"""Servers of the coalescing benchmark: raw grpc.aio (per message and a hand-written
adaptive batching loop) and grpcstream (``batching=``), for the ``LogBench`` service.

``python -m benchmarks.coalescing_impl --impl raw|grpcstream`` prints ``PORT <n>`` and
serves until its stdin closes. Senders build every entry inside the timed loop with
:func:`build_entry`, which stamps it with the wall-clock send time (``timestamp``), so a
receiver measures send-to-receive delay; both processes run on the same machine clock.

``LogRequest.service`` selects a mode: ``""`` sends ``limit`` entries as fast as possible,
``"rate:200"`` paces them at 200 entries/s, ``"producers:16"`` splits them over 16
producer tasks on the one stream (grpcstream only).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from grpc import aio

import grpcstream
from grpcstream_demo import bench_pb2, bench_pb2_grpc, logs_pb2
from grpcstream_demo.logs_pb2 import LogBatch, LogEntry, LogRequest, UploadSummary

from .common import IMPLS, Impl, run_on_loop

__all__ = [
    "HAND_WRITTEN_MAX_ENTRIES",
    "LOG_BATCHES",
    "AdaptiveBatcher",
    "GrpcstreamBench",
    "RawBench",
    "build_entry",
    "sent_at_ns",
]

LOG_BATCHES = grpcstream.Batching(LogBatch, LogEntry, field="entries")
"""The declaration the grpcstream side uses: default bounds, no linger."""

HAND_WRITTEN_MAX_ENTRIES = LOG_BATCHES.max_entries
"""The hand-written loop uses the same bounds as grpcstream's defaults."""

_MESSAGE = (
    "GET /v1/orders/8421 200 12.4ms user=7f3a9c request_id=0b9e5d4a-1c2f-4e7b-9a61 "
    "host=web-1 region=eu-west-1 upstream=orders-v2"
)
_SERVICE = "api-gateway"
_INFO = logs_pb2.INFO


def build_entry(seq: int) -> LogEntry:
    """A ~150-byte log entry stamped with the current wall-clock time (the send time)."""
    entry = LogEntry(seq=seq, level=_INFO, service=_SERVICE, message=_MESSAGE)
    entry.timestamp.FromNanoseconds(time.time_ns())
    return entry


def sent_at_ns(entry: LogEntry) -> int:
    """The send time :func:`build_entry` stamped on ``entry``."""
    stamp = entry.timestamp
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def _mode(request: LogRequest) -> tuple[str, int]:
    name, _, value = request.service.partition(":")
    return name, int(value or "0")


async def pace(index: int, start: float, rate: int) -> None:
    """Sleep until entry ``index`` is due at ``rate`` entries/s from ``start``."""
    delay = start + index / rate - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


class AdaptiveBatcher:
    """The hand-written raw grpc.aio loop: one writer drains whatever queued up meanwhile.

    ``add()`` appends an entry and, when ``bound`` entries wait, blocks until the writer
    took them. The writer task sends everything pending (up to ``max_entries``) as one
    ``LogBatch`` per ``write``. No timer: at light load a batch is one entry.
    """

    def __init__(
        self,
        write: Callable[[LogBatch], Awaitable[None]],
        *,
        max_entries: int = HAND_WRITTEN_MAX_ENTRIES,
        bound: int = HAND_WRITTEN_MAX_ENTRIES,
    ) -> None:
        self._write = write
        self._max_entries = max_entries
        self._bound = bound
        self._pending: list[LogEntry] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._error: BaseException | None = None
        self.entries = 0
        self.batches = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def add(self, entry: LogEntry) -> None:
        """Queue one entry (waits while ``bound`` entries are pending)."""
        pending = self._pending
        pending.append(entry)
        if len(pending) == 1:
            self._wake.set()
        if len(pending) >= self._bound:
            self._room.clear()
            await self._room.wait()
            if self._error is not None:
                raise self._error

    async def close(self) -> None:
        """Write what is pending, then stop the writer."""
        self._closed = True
        self._wake.set()
        await self._task
        if self._error is not None:
            raise self._error

    async def _run(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            take = pending[: self._max_entries]
            del pending[: self._max_entries]
            self._room.set()
            batch = LogBatch()
            batch.entries.extend(take)  # from a list: protobuf's fastest way to fill a batch
            try:
                await self._write(batch)
            except Exception as exc:  # the call ended: the producer must hear of it
                self._error = exc
                self._room.set()
                return
            self.entries += len(take)
            self.batches += 1


class RawBench(bench_pb2_grpc.LogBenchServicer):
    """Plain grpc.aio: per-message methods written idiomatically, batch methods by hand."""

    def __init__(self) -> None:
        self._last: AdaptiveBatcher | None = None  # read live: a cancelled stream never ends

    async def StreamEntries(
        self, request: LogRequest, context: aio.ServicerContext[object, object]
    ) -> AsyncIterator[LogEntry]:
        mode, value = _mode(request)
        start = time.perf_counter()
        for seq in range(1, request.limit + 1):
            if mode == "rate":
                await pace(seq, start, value)
            yield build_entry(seq)

    async def UploadEntries(
        self,
        request_iterator: AsyncIterator[LogEntry],
        context: aio.ServicerContext[object, object],
    ) -> UploadSummary:
        received = 0
        async for _ in request_iterator:
            received += 1
        return UploadSummary(received=received)

    async def EchoEntries(
        self,
        request_iterator: AsyncIterator[LogEntry],
        context: aio.ServicerContext[object, object],
    ) -> AsyncIterator[LogEntry]:
        async for entry in request_iterator:
            yield entry

    async def StreamBatches(  # type: ignore[override]
        self, request: LogRequest, context: aio.ServicerContext[object, object]
    ) -> None:
        mode, value = _mode(request)
        if mode == "producers":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "measured with grpcstream only")
        batcher = self._last = AdaptiveBatcher(context.write)
        start = time.perf_counter()
        add = batcher.add
        for seq in range(1, request.limit + 1):
            if mode == "rate":
                await pace(seq, start, value)
            await add(build_entry(seq))
        await batcher.close()

    async def UploadBatches(
        self,
        request_iterator: AsyncIterator[LogBatch],
        context: aio.ServicerContext[object, object],
    ) -> UploadSummary:
        received = 0
        async for batch in request_iterator:
            for _ in batch.entries:
                received += 1
        return UploadSummary(received=received)

    async def EchoBatches(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[LogBatch],
        context: aio.ServicerContext[object, object],
    ) -> None:
        batcher = self._last = AdaptiveBatcher(context.write)
        add = batcher.add
        async for batch in request_iterator:
            for entry in batch.entries:
                await add(entry)
        await batcher.close()

    async def LastStream(
        self, request: bench_pb2.StatisticsRequest, context: aio.ServicerContext[object, object]
    ) -> bench_pb2.StreamStatistics:
        last = self._last
        if last is None:
            return bench_pb2.StreamStatistics()
        return bench_pb2.StreamStatistics(entries=last.entries, batches=last.batches)


class GrpcstreamBench(grpcstream.StreamServicer, bench_pb2_grpc.LogBenchServicer):
    """grpcstream's public API: plain decorators per message, ``batching=`` for batches."""

    def __init__(self) -> None:
        self._last: grpcstream.ServerStream[LogEntry] | None = None

    @grpcstream.server_streaming
    async def StreamEntries(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        await self._produce(request, stream)

    @grpcstream.client_streaming
    async def UploadEntries(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        async for _ in requests:
            pass
        return UploadSummary(received=requests.received)

    @grpcstream.bidi_streaming
    async def EchoEntries(
        self,
        requests: grpcstream.RequestStream[LogEntry],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        async for entry in requests:
            await stream.send(entry)

    @grpcstream.server_streaming(batching=LOG_BATCHES)
    async def StreamBatches(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        self._last = stream
        await self._produce(request, stream)

    @grpcstream.client_streaming(batching=LOG_BATCHES)
    async def UploadBatches(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        async for _ in requests:
            pass
        return UploadSummary(received=requests.received)

    @grpcstream.bidi_streaming(batching=LOG_BATCHES)
    async def EchoBatches(
        self,
        requests: grpcstream.RequestStream[LogEntry],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        self._last = stream
        send = stream.send
        async for entry in requests:
            await send(entry)

    @grpcstream.unary
    async def LastStream(
        self, request: bench_pb2.StatisticsRequest, context: grpcstream.CallContext
    ) -> bench_pb2.StreamStatistics:
        if self._last is None:
            return bench_pb2.StreamStatistics()
        statistics = self._last.statistics()
        return bench_pb2.StreamStatistics(entries=statistics.sent, batches=statistics.batches)

    async def _produce(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        mode, value = _mode(request)
        send = stream.send
        if mode == "producers":
            share, extra = divmod(request.limit, value)

            async def produce(count: int) -> None:
                for seq in range(1, count + 1):
                    await send(build_entry(seq))

            async with asyncio.TaskGroup() as group:
                for index in range(value):
                    group.create_task(produce(share + (1 if index < extra else 0)))
            return
        start = time.perf_counter()
        for seq in range(1, request.limit + 1):
            if mode == "rate":
                await pace(seq, start, value)
            await send(build_entry(seq))


async def _serve(impl: Impl) -> None:
    from .server import _wait_for_stop

    if impl == "raw":
        server = aio.server()
        bench_pb2_grpc.add_LogBenchServicer_to_server(RawBench(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"PORT {port}", flush=True)
        try:
            await _wait_for_stop()
        finally:
            await server.stop(0)
        return
    stream_server = grpcstream.StreamServer("127.0.0.1:0")
    stream_server.add(GrpcstreamBench())
    await stream_server.start()
    print(f"PORT {stream_server.port}", flush=True)
    try:
        await _wait_for_stop()
    finally:
        await stream_server.stop(grace=0)


def main(argv: list[str] | None = None) -> None:
    """Serve one implementation until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=IMPLS, required=True)
    args = parser.parse_args(argv)
    impl: Impl = args.impl
    run_on_loop("asyncio", lambda: _serve(impl))


if __name__ == "__main__":
    main()
