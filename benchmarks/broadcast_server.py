"""Fan-out benchmark server: ``python -m benchmarks.broadcast_server`` (prints ``PORT <n>``).

``StreamLogs`` follows one of two fan-outs in the same process, picked by
``LogRequest.service``:

- ``"broadcast"``: ``Broadcast.serve()`` (one shared log, a cursor per subscriber);
- ``"queues"``: the hand-written fan-out everybody writes first: one ``asyncio.Queue``
  per subscriber, and a publisher that puts every entry into every queue.

``GetStatus`` is the control channel: ``service="publish:<fanout>:<count>:<subscribers>"``
waits until that many subscribers follow ``<fanout>``, then publishes ``count`` entries
(100 per event-loop turn) and returns; ``service="fill:<count>"`` publishes ``count``
entries into the broadcast log at once (for the memory figure).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Final

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

from .common import LOOPS, LoopKind, make_entry, run_on_loop, stdin_reader

__all__ = ["FanoutService", "main"]

CHUNK: Final = 100
"""Entries published per event-loop turn, for both fan-outs."""


class FanoutService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """The two fan-outs behind one service (see the module docstring)."""

    def __init__(self, max_entries: int) -> None:
        self.log = grpcstream.Broadcast(LogEntry, max_entries=max_entries)
        self.queues: set[asyncio.Queue[LogEntry]] = set()
        self.changed = asyncio.Condition()
        self.followers = 0

    async def _subscribers_changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    @grpcstream.server_streaming
    async def StreamLogs(
        self, request: LogRequest, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:
        limit = request.limit or None
        if request.service == "broadcast":
            self.followers += 1
            await self._subscribers_changed()
            try:
                # serve() takes its cursor before it first yields, so before the
                # publisher (woken by the notification above) runs again. last=1 sends
                # the newest entry at once, so a client knows its cursor exists.
                await self.log.serve(
                    stream,
                    last=request.last or None,  # else live only
                    limit=limit,
                )
            finally:
                self.followers -= 1
            return
        queue: asyncio.Queue[LogEntry] = asyncio.Queue()
        self.queues.add(queue)
        await self._subscribers_changed()
        try:
            sent = 0
            while limit is None or sent < limit:
                await stream.send(await queue.get())
                sent += 1
        finally:
            self.queues.discard(queue)

    @grpcstream.unary
    async def GetStatus(self, request: StatusRequest, context: grpcstream.CallContext) -> Status:
        command, *args = request.service.split(":")
        entry = make_entry()
        if command == "fill":
            # Distinct entries, as a real log holds (the fan-out re-sends one entry).
            first = (self.log.statistics().newest or 0) + 1
            for seq in range(first, first + int(args[0])):
                self.log.publish(make_entry(seq))
        elif command == "publish":
            fanout, count, subscribers = args[0], int(args[1]), int(args[2])

            def ready() -> bool:
                have = self.followers if fanout == "broadcast" else len(self.queues)
                return have >= subscribers

            async with self.changed:
                await self.changed.wait_for(ready)
            for start in range(0, count, CHUNK):
                for _ in range(min(CHUNK, count - start)):
                    if fanout == "broadcast":
                        self.log.publish(entry)
                    else:
                        for queue in self.queues:
                            queue.put_nowait(entry)
                await asyncio.sleep(0)
        stats = self.log.statistics()
        return Status(service=request.service, healthy=True, entries=stats.entries)

    @grpcstream.client_streaming
    async def UploadLogs(
        self, requests: grpcstream.RequestStream[LogEntry], context: grpcstream.CallContext
    ) -> UploadSummary:
        raise grpcstream.Unimplemented("not part of this benchmark")

    @grpcstream.bidi_streaming
    async def Follow(
        self,
        requests: grpcstream.RequestStream[FollowRequest],
        stream: grpcstream.ServerStream[LogEntry],
    ) -> None:
        raise grpcstream.Unimplemented("not part of this benchmark")


async def _serve(max_entries: int) -> None:
    server = grpcstream.StreamServer("127.0.0.1:0", grace=0.0)
    server.add(FanoutService(max_entries))
    await server.start()
    print(f"PORT {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader = await stdin_reader()
    stdin_eof = asyncio.ensure_future(reader.read())  # the runner closes stdin when done
    stop_wait = asyncio.ensure_future(stop.wait())
    await asyncio.wait({stdin_eof, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stdin_eof.cancel()
    stop_wait.cancel()
    await server.stop(grace=0)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--max-entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    loop: LoopKind = args.loop
    run_on_loop(loop, lambda: _serve(args.max_entries))


if __name__ == "__main__":
    main()
