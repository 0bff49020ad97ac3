"""SendQueue: a bounded queue drained by exactly one writer task.

grpc.aio allows one outstanding ``write()`` per call; a second concurrent write fails the
RPC with INTERNAL. Every grpcstream stream therefore funnels its messages through a
SendQueue: any number of tasks call ``SendQueue.send()``, one writer task owns the
``write`` coroutine. The queue is bounded, so a slow peer slows producers down instead of
growing memory (backpressure), modelled on anyio's memory object streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ._exceptions import SEND_AFTER_CLOSE, StreamClosedError, WouldBlock
from ._validate import positive_count

if TYPE_CHECKING:
    from ._batching import Packer

__all__ = ["DEFAULT_MAX_QUEUED", "SendQueue", "SendQueueStatistics"]

T = TypeVar("T")

DEFAULT_MAX_QUEUED = 64
"""Default bound of a send queue, in messages.

64 keeps the writer busy while producers run (the C-core batches writes well below that)
and bounds memory per stream to 64 messages however slow the peer is.
"""


CANCELLED_WHILE_SENDING = "the stream was cancelled; nothing more is sent"


class SendQueueStatistics(NamedTuple):
    """A snapshot of a send queue, from ``statistics()``.

    On a batched stream (``batching=``) every count is in entries, except ``batches``.

    Attributes:
        queued: messages accepted but not yet written (including those being written).
        sent: messages the writer has handed to gRPC.
        max_size: the bound; ``queued`` never exceeds it (on a batched stream, the batch
            being written is not counted against it).
        waiting_senders: tasks blocked in ``send()`` waiting for room.
        batches: writes made: batches on a batched stream, else equal to ``sent``.
    """

    queued: int
    sent: int
    max_size: int
    waiting_senders: int
    batches: int = 0

    @property
    def mean_batch_size(self) -> float:
        """Entries per write so far (1.0 on a stream without batching; 0.0 before any)."""
        return self.sent / self.batches if self.batches else 0.0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # close() called: no new messages, draining what is queued
    CLOSED = "closed"  # drained and half-closed
    FAILED = "failed"  # the writer or the RPC failed; nothing more will be written


_OPEN = _State.OPEN


class SendQueue(Generic[T]):
    """A bounded queue whose single writer task performs every write.

    Args:
        write: the coroutine function that writes one message (``call.write`` or
            ``context.write``). Only the writer task ever calls it.
        done_writing: called once, after the last queued message has been written, when the
            queue is closed (``call.done_writing`` on the client; None on the server).
        translate_error: turns an exception raised by ``write`` into the one that senders
            see (for instance the RPC's final status as a typed error).
        max_size: the bound, in messages (must be at least 1).
        name: used in the writer task's name, for debugging.
        packer: for a batched stream: ``write`` then receives batches that the writer
            packs from everything queued (see ``Batching``), and ``send()`` refuses
            entries the packer does not admit.

    Raises:
        ValueError: if ``max_size`` is less than 1.
    """

    __slots__ = (
        "_batches",
        "_buffer",
        "_done",
        "_done_writing",
        "_error",
        "_in_flight",
        "_lingering",
        "_max_size",
        "_name",
        "_on_wait",
        "_packer",
        "_reserved",
        "_sent",
        "_state",
        "_translate_error",
        "_waiters",
        "_wakeup",
        "_write",
        "_writer",
    )

    def __init__(
        self,
        write: Callable[[T], Awaitable[None]],
        *,
        done_writing: Callable[[], Awaitable[None]] | None = None,
        translate_error: Callable[[BaseException], BaseException] | None = None,
        max_size: int = DEFAULT_MAX_QUEUED,
        name: str = "grpcstream-writer",
        packer: Packer[object, T] | None = None,
    ) -> None:
        positive_count("max_size", max_size)
        self._write = write
        self._done_writing = done_writing
        self._translate_error = translate_error
        self._max_size = max_size
        self._name = name
        self._buffer: deque[T] = deque()
        # Created on first use: an empty deque costs 760 bytes, and most streams never have
        # a blocked sender (idle server streams are the common case that pays for it).
        self._waiters: deque[asyncio.Future[None]] | None = None
        self._reserved = 0  # woken waiters that have not appended their message yet
        self._sent = 0
        self._state = _State.OPEN
        self._error: BaseException | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._packer = packer
        self._batches = 0
        self._in_flight = 0  # entries of the batch being written (batched streams only)
        self._lingering: asyncio.Future[None] | None = None
        # Telemetry's recorder of how long a blocked send() waited; None when it is off.
        self._on_wait: Callable[[float], None] | None = None

    # -- producers -------------------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self._state is _State.FAILED:
            assert self._error is not None
            raise self._error
        if self._state is not _State.OPEN:
            raise StreamClosedError(SEND_AFTER_CLOSE)

    def _has_room(self) -> bool:
        return len(self._buffer) + self._reserved < self._max_size

    def _enqueue(self, message: T) -> None:
        self._buffer.append(message)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain(), name=self._name)
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def send_nowait(self, message: T) -> None:
        """Queue a message without waiting.

        Raises:
            WouldBlock: the queue is full (or other tasks are already waiting for room).
            Exception: what ``send()`` raises, in the same cases (closed, failed, a bad
                entry); nothing was queued.
        """
        if self._state is not _OPEN:  # the fast path pays one comparison
            self._check_can_send()
        if self._packer is not None:
            self._packer.admit(message)
        if self._waiters or not self._has_room():
            raise WouldBlock(f"send queue is full ({self._max_size} messages)")
        self._enqueue(message)

    async def send(self, message: T) -> None:
        """Queue a message, waiting for room while the queue is full (backpressure).

        Safe to call from any number of tasks; each task's messages keep their order.
        Atomic under cancellation: if ``CancelledError`` is raised, the message was not
        queued.

        Raises:
            StreamClosedError: the queue was closed; nothing was queued.
            RpcError: the RPC failed (also raised to tasks that were waiting for room).
            BrokenStreamError: the peer went away.
            TypeError, ValueError: on a batched stream, an entry of the wrong type or too
                large for any batch; nothing was queued.
        """
        if self._state is not _OPEN:  # the fast path pays one comparison
            self._check_can_send()
        if self._packer is not None:
            self._packer.admit(message)
        if not self._waiters and self._has_room():
            self._enqueue(message)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        started = loop.time()
        if self._waiters is None:
            self._waiters = deque()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Room was granted to us but we will not use it: hand it on.
                self._reserved -= 1
                self._wake_waiters()
            else:
                self._remove_waiter(waiter)
            raise
        self._reserved -= 1
        if self._on_wait is not None:
            self._on_wait(loop.time() - started)
        # Room was reserved for us, but the queue may have been closed meanwhile.
        self._check_can_send()
        self._enqueue(message)

    def _remove_waiter(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            if self._waiters is not None:
                self._waiters.remove(waiter)

    def _wake_waiters(self) -> None:
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._reserved += 1
                waiter.set_result(None)

    # -- the writer task -------------------------------------------------------------------

    async def _drain(self) -> None:
        """The writer task: write what is queued, then sleep until more is, until closed."""
        packer = self._packer
        write_buffered = self._write_each if packer is None else self._write_batches
        loop = asyncio.get_running_loop()
        try:
            while True:
                await write_buffered()
                if self._state is not _State.OPEN:
                    break
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
        except asyncio.CancelledError:
            self._fail_from_writer(None)
            raise
        except Exception as exc:  # every failure must reach the senders
            self._fail_from_writer(exc)
            return
        await self._finish_writing()

    async def _write_each(self) -> None:
        buffer = self._buffer
        write = self._write
        # Blocked senders are woken once the queue has drained to half, not after every
        # write: they then refill it in one burst instead of one task switch per message.
        low_water = self._max_size // 2
        while buffer:
            await write(buffer[0])
            buffer.popleft()
            self._sent += 1
            if self._waiters and len(buffer) + self._reserved <= low_water:
                self._wake_waiters()

    async def _write_batches(self) -> None:
        # Everything queued goes out in one write: while it is in flight, producers fill
        # the queue again, so batches grow with the load and stay at one entry when idle.
        packer = self._packer
        assert packer is not None
        buffer = self._buffer
        write: Callable[[Any], Awaitable[None]] = self._write
        low_water = self._max_size // 2
        linger = packer.linger
        while buffer:
            if linger and len(buffer) < packer.max_entries and self._state is _State.OPEN:
                # Not the wakeup future: new entries must not cut the linger short, only
                # close() does (a half-close flushes at once).
                loop = asyncio.get_running_loop()
                self._lingering = loop.create_future()
                timer = loop.call_later(linger, _resolve, self._lingering)
                await self._lingering
                timer.cancel()
                self._lingering = None
                if not buffer:
                    continue
            batch, count = packer.pack(buffer)
            self._in_flight = count
            if self._waiters and len(buffer) + self._reserved <= low_water:
                self._wake_waiters()  # they refill the queue while the batch is written
            await write(batch)
            self._in_flight = 0
            self._sent += count
            self._batches += 1

    async def _finish_writing(self) -> None:
        try:
            if self._done_writing is not None:
                await self._done_writing()
        except Exception as exc:
            self._fail_from_writer(exc)
            return
        self._state = _State.CLOSED
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fail_from_writer(self, exc: BaseException | None) -> None:
        if self._state is _State.FAILED:
            return
        if exc is None:
            error: BaseException = StreamClosedError(CANCELLED_WHILE_SENDING)
        elif self._translate_error is not None:
            error = self._translate_error(exc)
        else:
            error = exc
        self.fail(error)

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop accepting messages, wait until every queued one is written, then half-close.

        Idempotent: later and concurrent calls wait for the same completion. If the queue
        has failed, raises that failure instead.

        Raises:
            RpcError: the RPC failed before everything queued was written.
            BrokenStreamError: the peer went away.

        Cancellation: cancelling the waiting task does not undo the close; the writer keeps
        draining in the background until the RPC ends.
        """
        if self._state is _State.FAILED:
            assert self._error is not None
            raise self._error
        if self._state is _State.CLOSED:
            return
        loop = asyncio.get_running_loop()
        if self._done is None:
            self._done = loop.create_future()
        if self._state is _State.OPEN:
            self._state = _State.CLOSING
            self._reject_waiters(StreamClosedError(SEND_AFTER_CLOSE))
            if self._writer is None:
                self._writer = loop.create_task(self._finish_writing(), name=self._name)
            elif self._wakeup is not None and not self._wakeup.done():
                self._wakeup.set_result(None)
            elif self._lingering is not None:
                _resolve(self._lingering)
        await asyncio.shield(self._done)

    def fail(self, error: BaseException) -> None:
        """Fail the queue: drop what is queued and make every pending and later sender raise.

        Called by the owner when the RPC ends (with its typed status) or the peer goes away.
        Idempotent: only the first error is kept. The writer task is cancelled.
        """
        if self._state is _State.FAILED or self._state is _State.CLOSED:
            return
        self._state = _State.FAILED
        self._error = error
        self._buffer.clear()
        self._reject_waiters(error)
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)
            self._done.exception()  # mark retrieved: nobody may be waiting on close()
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task() and not writer.done():
            writer.cancel()

    def _reject_waiters(self, error: BaseException) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    async def aclose(self) -> None:
        """Fail the queue if it is still open and wait for the writer task to end.

        Never raises because of the queue's own failure; used for cleanup.
        """
        if self._state in (_State.OPEN, _State.CLOSING):
            self.fail(StreamClosedError("the stream was closed; nothing more is sent"))
        writer = self._writer
        if writer is not None and not writer.done():
            try:
                await writer
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    # -- introspection ---------------------------------------------------------------------

    @property
    def max_size(self) -> int:
        """The bound, in messages."""
        return self._max_size

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``fail()`` was called."""
        return self._state is not _State.OPEN

    @property
    def error(self) -> BaseException | None:
        """The failure senders see, or None."""
        return self._error

    def statistics(self) -> SendQueueStatistics:
        """Return a snapshot: queued, sent, max size and waiting senders."""
        return SendQueueStatistics(
            queued=len(self._buffer) + self._in_flight,
            sent=self._sent,
            max_size=self._max_size,
            waiting_senders=len(self._waiters) if self._waiters else 0,
            batches=self._batches if self._packer is not None else self._sent,
        )
