"""Helpers shared by the scale-out benchmark's runner and its in-memory server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from grpcstream_demo.logs_pb2 import LogEntry

__all__ = ["paced", "stamped"]

BURST = 200  # entries published between two yields to the event loop


def stamped() -> LogEntry:
    """A small entry carrying its publish time (wall clock, ns)."""
    entry = LogEntry(service="bench", message="a log line of a typical length, for benchmarks")
    entry.timestamp.FromNanoseconds(time.time_ns())
    return entry


async def paced(count: int, rate: float) -> AsyncIterator[int]:
    """Yield 0..count-1, at ``rate`` per second (0: as fast as the consumer goes)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(count):
        if rate > 0:
            delay = start + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        elif n % BURST == BURST - 1:
            await asyncio.sleep(0)
        yield n
