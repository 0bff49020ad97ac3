"""Shared pieces of the benchmark: messages, the scenario protocol, event loops, CPU clocks.

Server and client run in separate processes. The runner talks to each client process
with one JSON object per line on stdin/stdout; the servers only print their port.
Everything here is shared by the raw grpc.aio and the grpcstream implementations so the
two sides send byte-identical messages.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, Literal, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from grpcstream_demo import logs_pb2

__all__ = [
    "FOLLOW_SERVICE",
    "IMPLS",
    "LOOPS",
    "PRODUCERS_PREFIX",
    "Impl",
    "LoopKind",
    "cpu_seconds",
    "make_entry",
    "make_follow_request",
    "make_status",
    "run_on_loop",
    "stdin_reader",
    "uvloop_available",
]

T = TypeVar("T")

Impl = Literal["raw", "grpcstream"]
LoopKind = Literal["asyncio", "uvloop"]
IMPLS: Final[tuple[Impl, ...]] = ("raw", "grpcstream")
LOOPS: Final[tuple[LoopKind, ...]] = ("asyncio", "uvloop")

PRODUCERS_PREFIX: Final = "producers:"
"""``LogRequest.service`` of the form ``producers:16`` asks for 16 producer tasks."""

FOLLOW_SERVICE: Final = "bench-follow-" + "x" * 127
"""Pads ``FollowRequest`` to about the size of a log entry (~150 bytes)."""


def make_entry(seq: int = 123456) -> logs_pb2.LogEntry:
    """A log entry of about 150 bytes serialized, like a real access-log line."""
    return logs_pb2.LogEntry(
        seq=seq,
        timestamp=Timestamp(seconds=1767225600, nanos=123456789),
        level=logs_pb2.INFO,
        service="api-gateway",
        message="GET /v1/orders/8421 200 12.4ms user=7f3a9c request_id=0b9e5d4a-1c2f-4e7b-9a61",
        fields={"host": "web-1", "region": "eu-west-1"},
    )


def make_follow_request() -> logs_pb2.FollowRequest:
    """The bidi request, padded to about the size of a log entry."""
    return logs_pb2.FollowRequest(service=FOLLOW_SERVICE, min_level=logs_pb2.INFO)


def make_status() -> logs_pb2.Status:
    """The unary response."""
    return logs_pb2.Status(service="api-gateway", healthy=True, last_seq=123456, entries=99)


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads included (gRPC's C-core too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def monotonic() -> float:
    """The clock every benchmark uses for elapsed time."""
    return time.perf_counter()


def uvloop_available() -> bool:
    """True if uvloop can be imported (it is optional)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run_on_loop(loop: LoopKind, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on the chosen event loop implementation."""
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    with asyncio.Runner() as runner:
        return runner.run(main())


async def stdin_reader() -> asyncio.StreamReader:
    """An asyncio reader on this process's stdin (a pipe from the runner).

    Unlike a blocking read in an executor thread, it never keeps the process alive at exit.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
