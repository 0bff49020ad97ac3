"""Where the log server's entries come from: a synthetic generator or a tailed file.

Both sources number entries so that a restarted server hands out the same sequence
numbers again: the synthetic entry ``n`` is a pure function of ``n``, and a file's entry
``n`` is its line ``n``. A client that resumes with ``after_seq`` therefore sees no gap
and no duplicate, whichever server process answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from grpcstream_demo.logs_pb2 import DEBUG, ERROR, INFO, WARNING, Level, LogEntry

SERVICES = ("api", "auth", "billing", "worker")
_LEVELS = (DEBUG, INFO, WARNING, ERROR)
_LEVEL_WEIGHTS = (20, 60, 15, 5)
_MESSAGES = {
    DEBUG: ("cache lookup key=user:{n}", "pool size={k}", "retrying step {k}"),
    INFO: ("GET /items/{k} 200 in {ms} ms", "user {k} signed in", "job {n} done in {ms} ms"),
    WARNING: ("slow query: {ms} ms", "queue depth {k} above 50", "token for user {k} expires"),
    ERROR: ("GET /items/{k} 500: upstream timeout", "payment {n} declined", "job {n} crashed"),
}
_FILE_POLL = 0.25  # seconds between looks at a tailed file that has not grown


class LogSource(Protocol):
    """What the server needs from a source of log entries."""

    def last_seq(self) -> int:
        """The sequence number of the newest entry available now (0: none yet)."""
        ...

    def entries(
        self, after_seq: int, follow: bool, stop: asyncio.Event
    ) -> AsyncGenerator[LogEntry, None]:
        """Yield entries with ``seq > after_seq`` in order.

        Without ``follow`` it ends at the newest entry; with it, it waits for new ones.
        It ends early once ``stop`` is set.
        """
        ...


def level_filter(service: str, min_level: Level.ValueType) -> Callable[[LogEntry], bool]:
    """A predicate for entries of ``service`` (``""``: any) at ``min_level`` or above."""

    def matches(entry: LogEntry) -> bool:
        return (not service or entry.service == service) and entry.level >= min_level

    return matches


async def _wait(stop: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds unless ``stop`` is set first; return True if it was."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await stop.wait()
    return stop.is_set()


class SyntheticLog:
    """An endless, deterministic log growing at ``rate`` entries per second.

    Entry ``n`` always has the same level, service and message. The log's head is
    computed from the clock, so nothing runs in the background. When a client asks to
    resume after a sequence number this process has not produced yet (the server was
    restarted), the head jumps there and the log continues from it.

    Args:
        rate: new entries per second.
    """

    def __init__(self, rate: float = 20.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self._rate = rate
        self._base = 0
        self._origin = time.monotonic()
        self._wall_origin = time.time()

    def last_seq(self) -> int:
        """The newest sequence number produced so far."""
        return self._base + int((time.monotonic() - self._origin) * self._rate)

    def _advance_to(self, seq: int) -> None:
        if seq > self.last_seq():
            self._base = seq
            self._origin = time.monotonic()
            self._wall_origin = time.time()

    def entry(self, seq: int) -> LogEntry:
        """Entry number ``seq``: the same in every process, except for its timestamp."""
        rng = random.Random(seq)
        level = rng.choices(_LEVELS, _LEVEL_WEIGHTS)[0]
        template = rng.choice(_MESSAGES[level])
        message = template.format(n=seq, k=rng.randrange(1, 100), ms=rng.randrange(1, 900))
        stamp = Timestamp()
        stamp.FromNanoseconds(int((self._wall_origin + (seq - self._base) / self._rate) * 1e9))
        return LogEntry(
            seq=seq,
            timestamp=stamp,
            level=level,
            service=rng.choice(SERVICES),
            message=message,
            fields={"host": f"node-{rng.randrange(1, 4)}"},
        )

    async def entries(
        self, after_seq: int, follow: bool, stop: asyncio.Event
    ) -> AsyncGenerator[LogEntry, None]:
        """Yield entries after ``after_seq``: the backlog at once, then one per tick."""
        self._advance_to(after_seq)
        seq = after_seq + 1
        while not stop.is_set():
            head = self.last_seq()
            while seq <= head:
                yield self.entry(seq)
                seq += 1
            if not follow:
                return
            due = self._origin + (seq - self._base) / self._rate
            if await _wait(stop, max(0.0, due - time.monotonic())):
                return


class FileTail:
    """The lines of a text file as log entries: line ``n`` is entry ``n``.

    Levels are guessed from words such as ``ERROR`` or ``WARN``; the service is the file
    name without its suffix. The file is read again for each stream, so resuming after
    ``n`` skips ``n`` lines. Truncation and rotation are not handled.

    Args:
        path: the file to read and follow.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._service = path.stem

    def last_seq(self) -> int:
        """The number of complete lines in the file now."""
        with self._path.open("rb") as file:
            return sum(1 for line in file if line.endswith(b"\n"))

    def to_entry(self, seq: int, line: str) -> LogEntry:
        """Entry ``seq`` for one line of text."""
        upper = line.upper()
        level = INFO
        for word, value in (("DEBUG", DEBUG), ("WARN", WARNING), ("ERROR", ERROR)):
            if word in upper:
                level = value
        stamp = Timestamp()
        stamp.GetCurrentTime()
        return LogEntry(seq=seq, timestamp=stamp, level=level, service=self._service, message=line)

    async def entries(
        self, after_seq: int, follow: bool, stop: asyncio.Event
    ) -> AsyncGenerator[LogEntry, None]:
        """Yield the lines after line ``after_seq``, then (with ``follow``) new lines."""
        seq = 0
        pending = b""  # a last line still being written (no newline yet)
        with self._path.open("rb") as file:
            while not stop.is_set():
                chunk = file.read(64 * 1024)
                if not chunk:
                    if not follow or await _wait(stop, _FILE_POLL):
                        return
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    seq += 1
                    if seq > after_seq:
                        yield self.to_entry(seq, raw.decode(errors="replace").rstrip("\r"))
