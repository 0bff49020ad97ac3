"""Subscription: one reader's cursor into a Broadcast log."""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Final, Generic, Literal, NamedTuple, TypeVar

from typing_extensions import override

from ._exceptions import DataLoss, OutOfRange, ResourceExhausted, Unavailable, UsageError

if TYPE_CHECKING:
    from typing import Self

    from ._broadcast import Broadcast, Policy

__all__ = ["OnGap", "Subscription", "SubscriptionStatistics"]

T = TypeVar("T")

OnGap = Literal["raise", "oldest"]
"""What ``subscribe(after=...)`` does when ``after`` is older than the log holds."""


class _Empty:
    __slots__ = ()


EMPTY: Final = _Empty()  # nothing to read right now (entries can be None-like; no None)


class SubscriptionStatistics(NamedTuple):
    """A snapshot of one subscription, from ``sub.statistics()``.

    Attributes:
        position: position of the last entry delivered (before the first: the position
            it started after).
        lag: entries published that it has not read yet (0 when caught up).
        dropped: entries it skipped: lost to ``drop_oldest``, or missed before the
            oldest entry held when it started with ``on_gap="oldest"``.
        delivered: entries it has received.
        policy: its slow-subscriber policy.
    """

    position: int
    lag: int
    dropped: int
    delivered: int
    policy: Policy


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class Subscription(Generic[T]):
    """One subscriber of a [`Broadcast`][grpcstream.Broadcast]: a cursor into its log.

    Made by [`Broadcast.subscribe()`][grpcstream.Broadcast.subscribe]. Use it as
    ``async with ... as sub`` and iterate it; only one task may iterate a subscription
    at a time. It holds no entries of its
    own, so a slow subscriber costs memory only through the log, which is bounded.

    Cancellation: cancelling a task waiting in ``__anext__`` loses nothing; the cursor
    has not moved. Leaving the ``async with`` block frees the cursor at once.
    """

    __slots__ = (
        "__weakref__",
        "_after",
        "_delivered",
        "_dropped",
        "_last",
        "_log",
        "_max_lag",
        "_next",
        "_on_gap",
        "_policy",
        "_position",
        "_skip_until",
        "_state",
        "_waiter",
    )

    def __init__(
        self,
        log: Broadcast[T],
        after: int | None,
        last: int | None,
        policy: Policy,
        max_lag: int | None,
        on_gap: OnGap,
    ) -> None:
        self._log = log
        self._after = after
        self._last = last
        self._policy: Policy = policy
        self._max_lag = max_lag
        self._on_gap = on_gap
        self._next = 0  # absolute index of the next entry to read
        self._position = 0
        self._skip_until = -1  # entries at or before this position are passed over
        self._dropped = 0
        self._delivered = 0
        self._state = _State.NEW
        self._waiter: asyncio.Future[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _open(self) -> None:
        log = self._log
        entries = log._entries
        oldest = entries.offset + entries.head
        end = entries.offset + len(entries.items)
        after, last = self._after, self._last
        if last is not None:
            self._next = max(oldest, end - last)
            self._position = self._position_before(self._next)
        elif after is None:
            self._next = end
            self._position = entries.newest if entries.newest is not None else 0
        else:
            self._position = after
            missing = entries.last_evicted is not None and after < entries.last_evicted
            if missing and self._on_gap == "raise":
                oldest_position = entries.position_at(oldest)
                raise OutOfRange(
                    f"position {after} is no longer held: the oldest entry held is"
                    f" {oldest_position} (resume after {oldest_position - 1}, subscribe"
                    " with on_gap='oldest' to start there and count the gap, or use last=)"
                )
            if missing:
                self._next = oldest
                self._dropped = max(1, entries.position_at(oldest) - after - 1)
                log._dropped += self._dropped
            elif entries.newest is not None and after >= entries.newest:
                self._next = end
                self._skip_until = after
            else:
                self._next = entries.index_after(after)
                if self._next == end:
                    self._skip_until = after
        log._add_subscriber(self)
        self._state = _State.OPEN

    def _position_before(self, index: int) -> int:
        entries = self._log._entries
        if index > entries.offset + entries.head:
            return entries.position_at(index - 1)
        if entries.last_evicted is not None:
            return entries.last_evicted
        if index < entries.offset + len(entries.items):
            return entries.position_at(index) - 1
        return entries.newest if entries.newest is not None else 0

    def close(self) -> None:
        """Free the cursor now; iteration then ends. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        log = self._log
        log._subscribers.discard(self)
        if self._policy == "block":
            log._blocking.discard(self)
            log._wake_publishers()
        log._shrink()
        self._wake()

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise UsageError("a subscription can be entered once")
        self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._state is _State.NEW:
            self._open()  # used without `async with`: the cursor is freed when it ends
        try:
            while True:
                entry = self._take()
                if not isinstance(entry, _Empty):
                    return entry
                if self._log._closed or self._state is _State.CLOSED:
                    raise StopAsyncIteration
                if self._log._failure is not None:
                    raise self._unavailable()
                await self._wait()
        except (StopAsyncIteration, ResourceExhausted, DataLoss, Unavailable):
            self.close()
            raise

    def _take(self) -> T | _Empty:
        """The next entry, or EMPTY; applies the policy if this reader fell behind."""
        if self._state is not _State.OPEN:
            return EMPTY
        log = self._log
        entries = log._entries
        cursor = self._next
        offset = entries.offset
        items = entries.items
        end = offset + len(items)
        oldest = offset + entries.head
        max_lag = self._max_lag
        if cursor < oldest or (
            max_lag is not None and end - cursor > max_lag and self._policy != "block"
        ):
            cursor = self._fall_behind(cursor, oldest, end)
        skip = self._skip_until
        lost = log._lost
        positions = entries.positions
        while cursor < end:
            entry = items[cursor - offset]
            position = cursor + 1 if positions is None else positions[cursor - offset]
            cursor += 1
            if position <= skip:
                continue
            if lost and position > self._position + 1:
                self._next = cursor - 1
                self._cross_loss(lost, position)
            self._next = cursor
            self._position = position
            self._delivered += 1
            if log._room is not None and self._policy == "block":
                log._wake_publishers()
            return entry
        self._next = cursor
        return EMPTY

    def _cross_loss(self, lost: list[tuple[int, int]], position: int) -> None:
        """Tell the subscriber about entries a backend lost between it and ``position``."""
        previous = self._position
        missing = sum(
            min(last, position - 1) - max(first, previous + 1) + 1
            for first, last in lost
            if first < position and last > previous
        )
        if not missing:
            return
        if self._on_gap == "raise":
            raise DataLoss(
                f"{missing} entries between positions {previous} and {position} were lost"
                f" by the log's backend (see the Scaling out docs); to go on past them,"
                f" resume after position {position - 1}, or subscribe with on_gap='oldest'"
                " to count them in dropped and continue"
            )
        self._dropped += missing
        self._log._dropped += missing

    def _unavailable(self) -> Unavailable:
        return Unavailable(f"{self._log._failure}; resume after position {self._position}")

    def _fall_behind(self, cursor: int, oldest: int, end: int) -> int:
        max_lag = self._max_lag
        if self._policy == "disconnect":
            behind = end - cursor
            limit = f"max_lag={max_lag}" if max_lag is not None else "the log's size"
            raise ResourceExhausted(
                f"the subscriber fell {behind} entries behind ({limit}) and was"
                f" disconnected; resume after position {self._position}"
            )
        target = oldest if max_lag is None else max(oldest, end - max_lag)
        self._dropped += target - cursor
        self._log._dropped += target - cursor
        self._next = target
        return target

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        waiting = self._log._waiting
        waiting.add(waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            # publish() swaps the set, so this may be an older one: harmless.
            waiting.discard(waiter)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- introspection ---------------------------------------------------------------------

    @property
    def position(self) -> int:
        """Position of the last entry delivered: resume with ``after=`` this."""
        return self._position

    @property
    def dropped(self) -> int:
        """Entries skipped: lost to ``drop_oldest``, or missed before the oldest held."""
        return self._dropped

    @property
    def policy(self) -> Policy:
        """This subscriber's slow-subscriber policy."""
        return self._policy

    def statistics(self) -> SubscriptionStatistics:
        """A snapshot: position, lag in entries, entries dropped and delivered, policy."""
        entries = self._log._entries
        end = entries.offset + len(entries.items)
        lag = max(0, end - self._next) if self._state is _State.OPEN else 0
        return SubscriptionStatistics(
            position=self._position,
            lag=lag,
            dropped=self._dropped,
            delivered=self._delivered,
            policy=self._policy,
        )

    @override
    def __repr__(self) -> str:
        return (
            f"<Subscription {self._state.value} policy={self._policy}"
            f" position={self._position} dropped={self._dropped}>"
        )
