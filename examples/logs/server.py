"""The log server: LogService with all four RPC patterns, its live tail a Broadcast.

Run: ``python -m examples.logs.server --port 50051`` (synthetic logs at ``--rate`` entries
per second) or ``python -m examples.logs.server --port 50051 --file /var/log/app.log``
(tail a real file). One task reads the source and publishes every entry into a
``grpcstream.Broadcast`` that keeps the last ``--log-entries``; every following
``StreamLogs`` call is a subscription to it, so a thousand viewers cost one reader of the
source. It prints ``listening on HOST:PORT`` once it accepts calls, and on SIGINT/SIGTERM
it drains: open streams end with UNAVAILABLE (resume with ``after_seq``), and the process
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import (
    FollowRequest,
    LogEntry,
    LogRequest,
    Status,
    StatusRequest,
    UploadSummary,
)

from .batches import FIREHOSE, LogBatchService, firehose
from .source import FileTail, LogSource, SyntheticLog, level_filter

DRAINING = "the server is shutting down; resume with after_seq={}"


class LogService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """Serves the entries of one ``LogSource``.

    Args:
        source: where entries come from.
        log: the broadcast that :func:`publish` fills from ``source``; following calls
            of ``StreamLogs`` subscribe to it. Without one they read ``source`` directly.
    """

    def __init__(
        self, source: LogSource, log: grpcstream.Broadcast[LogEntry] | None = None
    ) -> None:
        self.source = source
        self.log = log
        self.uploaded = 0

    @grpcstream.unary
    async def GetStatus(self, request: StatusRequest, context: grpcstream.CallContext) -> Status:
        """Unary: the newest sequence number, and whether the server is draining."""
        last = self.source.last_seq()
        return Status(
            service=request.service,
            healthy=not context.closing.is_set(),
            last_seq=last,
            entries=last,
        )

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        """Server streaming: entries after ``after_seq`` that pass the filter.

        With ``follow`` the stream stays open for new entries; ``limit`` ends it after that
        many entries. When the server drains, the stream ends with UNAVAILABLE so that the
        client knows to resume rather than to stop. ``service="firehose"`` sends fresh
        entries as fast as they go instead (``demo --firehose``).

        Following streams are subscriptions to the broadcast log: ``after_seq`` (0: from
        the oldest entry held) or ``last`` picks where it starts, ``max_lag`` makes a
        slow viewer skip ahead instead of falling further behind. An ``after_seq`` older
        than the log holds ends with OUT_OF_RANGE naming the oldest entry held.
        """
        if request.service == FIREHOSE:
            await firehose(stream, request.limit)
            return
        matches = level_filter(request.service, request.min_level)
        if request.follow and self.log is not None:
            # --8<-- [start:serve]
            await self.log.serve(
                stream,
                after=None if request.last else request.after_seq,
                last=request.last or None,
                on_gap="oldest" if request.after_seq == 0 else "raise",
                max_lag=request.max_lag or None,
                where=matches,
                limit=request.limit or None,
            )
            # --8<-- [end:serve]
            return
        last = request.after_seq
        sent = 0
        entries = self.source.entries(request.after_seq, request.follow, stream.closing)
        async with contextlib.aclosing(entries):
            async for entry in entries:
                last = entry.seq
                if not matches(entry):
                    continue
                await stream.send(entry)  # waits while the client is slow (backpressure)
                sent += 1
                if sent == request.limit:
                    return
        if stream.closing.is_set():
            raise grpcstream.Unavailable(DRAINING.format(last))

    @grpcstream.client_streaming
    async def UploadLogs(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        """Client streaming: count the entries a client sends, answer after its half-close."""
        summary = UploadSummary()
        digest = hashlib.sha256()
        async for entry in requests:
            if summary.received == 0:
                summary.first_seq = entry.seq
            summary.received += 1
            summary.last_seq = entry.seq
            data = entry.SerializeToString(deterministic=True)
            summary.bytes += len(data)
            digest.update(data)
        summary.sha256 = digest.hexdigest()
        self.uploaded += summary.received
        return summary

    @grpcstream.bidi_streaming
    async def Follow(
        self,
        requests: grpcstream.RequestStream[FollowRequest],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        """Bidi: new entries that pass the latest filter the client sent.

        The first request starts the stream; each later one replaces the filter while
        entries keep flowing. The stream ends with OK when the client half-closes, and with
        UNAVAILABLE when the server drains.
        """
        try:
            first = await requests.receive()
        except StopAsyncIteration:
            return
        matches = level_filter(first.service, first.min_level)
        stop = asyncio.Event()  # the client half-closed, or the server is draining

        async def read_filters() -> None:
            nonlocal matches
            async for change in requests:
                matches = level_filter(change.service, change.min_level)
            stop.set()

        async def watch_closing() -> None:
            await stream.closing.wait()
            stop.set()

        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(read_filters()), loop.create_task(watch_closing())]
        try:
            async with contextlib.aclosing(
                self.source.entries(self.source.last_seq(), True, stop)
            ) as entries:
                async for entry in entries:
                    if matches(entry):
                        await stream.send(entry)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.wait(helpers)
        if stream.closing.is_set():
            raise grpcstream.Unavailable("the server is shutting down")


async def publish(
    source: LogSource, log: grpcstream.Broadcast[LogEntry], stop: asyncio.Event
) -> None:
    """Publish every entry of ``source`` into ``log`` until ``stop`` is set."""
    async with contextlib.aclosing(source.entries(0, True, stop)) as entries:
        async for entry in entries:
            log.publish(entry)


async def main(port: int, source: LogSource, grace: float, log_entries: int) -> None:
    """Serve ``source`` on 127.0.0.1:``port`` until SIGINT/SIGTERM, then drain."""
    server = grpcstream.StreamServer(f"127.0.0.1:{port}", grace=grace)
    log = grpcstream.Broadcast(LogEntry, max_entries=log_entries, key=lambda entry: entry.seq)
    server.add(LogService(source, log))
    server.add(LogBatchService(source))  # the same logs, batched on the wire
    await server.start()
    publisher = asyncio.create_task(publish(source, log, server.closing))
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    try:
        await server.serve()
    finally:
        publisher.cancel()
        await asyncio.wait([publisher])
        await log.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the log server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    parser.add_argument("--rate", type=float, default=20.0, help="synthetic entries per second")
    parser.add_argument("--file", type=Path, help="tail this file instead of synthetic logs")
    parser.add_argument("--grace", type=float, default=5.0, help="drain period in seconds")
    parser.add_argument(
        "--log-entries", type=int, default=10_000, help="entries the broadcast log keeps"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="server: %(levelname)s %(message)s")
    chosen: LogSource = FileTail(args.file) if args.file else SyntheticLog(args.rate)
    asyncio.run(main(args.port, chosen, args.grace, args.log_entries))
