"""Broadcast: one bounded replay log, many subscribers, each with its own cursor.

The log is one list of entries with a moving head (``EntryLog`` in ``_broadcast_log``:
appending and evicting are amortised O(1)). A subscriber is an integer cursor into it,
nothing more: publishing never copies an entry per subscriber and never walks the
subscribers. Memory is the log plus a small constant per subscriber, however far behind
they are.

Subscribers that have caught up park on a future of their own; ``publish()`` schedules
one callback (once per burst) that resolves the futures parked so far and empties that
set, so publishing stays O(1) and a burst costs one wake-up per waiting subscriber, not
one per entry. A subscriber that falls behind finds out when it next reads (its cursor
is older than the log, or further behind than ``max_lag``) and applies its policy then;
only ``block`` subscribers are consulted by the publisher, because they hold entries
back from eviction. Serving a subscription over a gRPC stream is ``_broadcast_serve``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Generic, Literal, NamedTuple, TypeVar

from typing_extensions import override

from ._broadcast_log import EntryLog
from ._exceptions import StreamClosedError, UsageError, WouldBlock
from ._validate import positive_count

if TYPE_CHECKING:
    from typing import Self

    from ._broadcast_redis import RedisLog
    from ._broadcast_serve import _ClosingWatch
    from ._redis_config import RedisStreams
    from ._server_stream import ServerStream
    from ._subscription import OnGap, Subscription

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "Broadcast",
    "BroadcastStatistics",
    "Policy",
]

T = TypeVar("T")

Policy = Literal["drop_oldest", "disconnect", "block"]
"""What happens to a subscriber that falls behind (see ``Broadcast.subscribe()``)."""

POLICIES: Final = ("drop_oldest", "disconnect", "block")

DEFAULT_MAX_ENTRIES: Final = 10_000
"""Default bound of a [`Broadcast`][grpcstream.Broadcast] log, in entries."""

PUBLISH_AFTER_CLOSE = "publish() after aclose(): the broadcast has ended and nothing was published"
BLOCKED = (
    "a 'block' subscriber has not read the entry this publish would evict (or is max_lag "
    "behind); use `await apublish()` to wait for it"
)


class BroadcastStatistics(NamedTuple):
    """A snapshot of a [`Broadcast`][grpcstream.Broadcast], from ``statistics()``.

    Attributes:
        entries: entries held in the log now.
        bytes: their total size (0 unless ``max_bytes`` is set).
        oldest: position of the oldest entry held (``None`` while the log is empty).
        newest: position of the newest entry published (``None`` before the first).
        published: entries published since the log was created.
        evicted: entries evicted to respect ``max_entries`` and ``max_bytes``.
        subscribers: open subscriptions.
        max_entries: the entry bound.
        max_bytes: the byte bound (``None``: none).
    """

    entries: int
    bytes: int
    oldest: int | None
    newest: int | None
    published: int
    evicted: int
    subscribers: int
    max_entries: int
    max_bytes: int | None


class Broadcast(Generic[T]):
    """A typed, in-process fan-out log with replay: one publisher, any number of subscribers.

    ``publish()`` appends to one bounded log and returns the entry's position; every
    subscriber reads the same log through its own cursor. A subscriber can start live,
    after a position it already has (no gap, no duplicate, even while publishing runs
    at full speed), or with the last ``n`` entries. How a slow subscriber is handled is
    chosen per subscriber (``policy=``).

    Args:
        entry_type: the entry class (a protobuf message class such as ``LogEntry``);
            ``publish()`` rejects anything else with ``TypeError``.
        max_entries: the log keeps at most this many entries (oldest evicted first).
        max_bytes: the log keeps at most this many bytes of entries (``None``: no byte
            bound). Sizes come from ``size`` or, for protobuf messages, ``ByteSize()``.
        key: takes each entry's position from the entry (``lambda e: e.seq``); positions
            must then strictly increase. Without it the log numbers entries 1, 2, 3...
        size: the size of one entry in bytes, for ``max_bytes`` (default ``ByteSize()``).
        backend: a [`RedisStreams`][grpcstream.RedisStreams] to keep the log in a Redis
            stream shared by several processes (extra ``grpcstream[redis]``; see
            "Scaling out"). Then
            ``await log.start()`` (or ``async with log``) connects before use, entries
            are published with ``await apublish()``, and this process's log is a mirror
            of the stream's newest ``max_entries`` entries. ``None``: in-process only.

    Raises:
        ValueError: a bound is not a positive int, or ``key`` given with a ``backend``.
        ImportError: a ``backend`` without the ``grpcstream[redis]`` extra installed.
        TypeError: ``max_bytes`` is set, no ``size`` is given and ``entry_type`` has no
            ``ByteSize()``.
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_blocking",
        "_closed",
        "_dropped",
        "_entries",
        "_failure",
        "_lost",
        "_peak",
        "_room",
        "_subscribers",
        "_type",
        "_waiting",
        "_wake_pending",
        "_watches",
    )

    def __init__(
        self,
        entry_type: type[T],
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int | None = None,
        key: Callable[[T], int] | None = None,
        size: Callable[[T], int] | None = None,
        backend: RedisStreams | None = None,
    ) -> None:
        self._entries = EntryLog(entry_type, max_entries, max_bytes, key, size)
        self._type = entry_type
        # Every subscriber's drops, closed ones included: what telemetry's counter reads.
        self._dropped = 0
        # Weak: a subscription that is dropped without being closed cannot pin a cursor.
        self._subscribers: weakref.WeakSet[Subscription[T]] = weakref.WeakSet()
        self._blocking: weakref.WeakSet[Subscription[T]] = weakref.WeakSet()
        self._peak = 0  # most subscribers since the sets were last rebuilt
        self._waiting: set[asyncio.Future[None]] = set()
        self._wake_pending = False
        self._room: asyncio.Future[None] | None = None
        self._closed = False
        self._watches: dict[asyncio.Event, _ClosingWatch] = {}
        # Set by a backend: why subscribers cannot be served now, and position ranges it
        # knows are lost (subscribers crossing one are told: see Subscription._take).
        self._failure: str | None = None
        self._lost: list[tuple[int, int]] | None = None
        self._backend: RedisLog[T] | None = None
        if backend is not None:
            if key is not None:
                raise ValueError("key= cannot be used with a backend: Redis numbers entries")
            from ._broadcast_redis import RedisLog

            self._backend = RedisLog(self, backend)

    # -- publishing ------------------------------------------------------------------------

    def publish(self, entry: T) -> int:
        """Append ``entry`` to the log and wake the subscribers waiting for it.

        O(1) whatever the number of subscribers (plus one check per ``block`` subscriber).
        Never waits. Subscribers waiting for it are woken right after the current burst
        of publishes. Not thread-safe: call it from the event loop's thread.

        Args:
            entry: the entry; it is shared with every subscriber, not copied, so do not
                mutate it afterwards.

        Returns:
            The entry's position.

        Raises:
            TypeError: ``entry`` is not an instance of ``entry_type``.
            ValueError: its ``key`` position does not follow the newest one, or it alone
                is larger than ``max_bytes``. Nothing was published.
            WouldBlock: a ``block`` subscriber has not yet read what this would evict (or
                is ``max_lag`` behind); nothing was published. ``apublish()`` waits instead.
            StreamClosedError: the broadcast was closed.
        """
        if self._closed:
            raise StreamClosedError(PUBLISH_AFTER_CLOSE)
        if self._backend is not None:
            raise UsageError("a Redis-backed Broadcast publishes with `await apublish()`")
        if not isinstance(entry, self._type):
            raise TypeError(f"publish() takes {self._type.__name__}, not {type(entry).__name__}")
        entries = self._entries
        position = entries.position_for(entry)
        size = entries.entry_size(entry)
        drop, freed = entries.evictions(size)
        if self._blocking and self._holds_back(drop):
            raise WouldBlock(BLOCKED)
        self._append(entry, position, size, drop, freed)
        return position

    async def apublish(self, entry: T) -> int:
        """Publish ``entry``, waiting while a ``block`` subscriber holds the log back.

        Without ``block`` subscribers this is ``publish()``. Publishers waiting together
        are let through in no particular order.

        Returns:
            The entry's position.

        Raises:
            TypeError, ValueError: as ``publish()``.
            StreamClosedError: the broadcast was closed (also while waiting).

        Cancellation: if cancelled while waiting, the entry was not published. With a
        Redis backend it may have been: the entry is queued for the next batch at once.
        A Redis-backed log retries while Redis is unreachable, then raises
        ``Unavailable`` (``RedisStreams.publish_timeout``).
        """
        while True:
            if self._closed:
                raise StreamClosedError(PUBLISH_AFTER_CLOSE)
            if not isinstance(entry, self._type):
                raise TypeError(
                    f"apublish() takes {self._type.__name__}, not {type(entry).__name__}"
                )
            if self._backend is not None:
                return await self._backend.publish(entry)
            entries = self._entries
            position = entries.position_for(entry)
            size = entries.entry_size(entry)
            drop, freed = entries.evictions(size)
            if not (self._blocking and self._holds_back(drop)):
                self._append(entry, position, size, drop, freed)
                return position
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)

    def _holds_back(self, drop: int) -> bool:
        """True if a ``block`` subscriber would lose an entry, or pass its ``max_lag``."""
        entries = self._entries
        end = entries.offset + len(entries.items)
        new_oldest = entries.offset + entries.head + drop
        for subscription in self._blocking:
            cursor = subscription._next
            if cursor < new_oldest:
                return True
            limit = subscription._max_lag
            if limit is not None and end + 1 - cursor > limit:
                return True
        return False

    def _append(self, entry: T, position: int, size: int, drop: int, freed: int) -> None:
        self._entries.append(entry, position, size, drop, freed)
        if self._waiting and not self._wake_pending:
            # The wake-ups run once, after this burst of publishes, not inside publish():
            # publish stays O(1) and a burst costs one wake-up per waiting subscriber.
            self._wake_pending = True
            asyncio.get_running_loop().call_soon(self._wake_waiting)

    def _wake_waiting(self) -> None:
        """Wake every subscriber parked so far (they re-read the log and may park again)."""
        self._wake_pending = False
        waiting = self._waiting
        if waiting:
            self._waiting = set()
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(None)

    # -- subscribers (used by Subscription) ------------------------------------------------

    def _add_subscriber(self, subscription: Subscription[T]) -> None:
        self._subscribers.add(subscription)
        if subscription._policy == "block":
            self._blocking.add(subscription)
        self._peak = max(self._peak, len(self._subscribers))

    def _shrink(self) -> None:
        # A set never gives back its table: after a crowd of subscribers has left, rebuild
        # the sets so that memory follows the subscribers still here, not the peak.
        count = len(self._subscribers)
        if self._peak > 64 and count * 4 < self._peak:
            self._subscribers = weakref.WeakSet(self._subscribers)
            self._blocking = weakref.WeakSet(self._blocking)
            self._peak = count

    def _wake_publishers(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            if not room.done():
                room.set_result(None)

    # -- subscribing -----------------------------------------------------------------------

    def subscribe(
        self,
        *,
        after: int | None = None,
        last: int | None = None,
        policy: Policy = "drop_oldest",
        max_lag: int | None = None,
        on_gap: OnGap = "raise",
    ) -> Subscription[T]:
        """A subscription: an async iterator of entries, and an async context manager.

        ``async with log.subscribe(...) as sub: async for entry in sub: ...``. The cursor
        is taken when the block is entered (or at the first ``__anext__`` without one)
        and freed when it is left.

        Args:
            after: deliver the entries after this position, then live ones: no gap, no
                duplicate. ``None`` (and no ``last``): live entries only. A position newer
                than the log's newest waits for the entries after it.
            last: start with the last ``last`` entries held (fewer if the log holds
                fewer), then live ones. Not together with ``after``.
            policy: what happens when this subscriber falls behind: ``"drop_oldest"``
                skips ahead (``sub.dropped`` counts what it lost; others are not slowed),
                ``"disconnect"`` ends it with ``ResourceExhausted`` (resume from
                ``sub.position``), ``"block"`` makes the publisher wait for it (lossless,
                but one stuck subscriber stops every publisher: see the docs).
            max_lag: how many entries it may fall behind (``None``: as far as the log
                holds). For ``block``, publishers wait once it is this far behind.
            on_gap: if ``after`` is older than the log holds: ``"raise"`` raises
                ``OutOfRange`` naming the oldest position held; ``"oldest"`` starts from
                the oldest entry held and counts the missed entries in ``sub.dropped``.
                The same choice applies to entries a Redis backend lost (``DataLoss``
                naming them, or a count in ``sub.dropped``).

        Raises:
            ValueError: a bad argument (checked here; ``OutOfRange`` comes on entering).

        After ``aclose()`` a subscription still replays what the log holds, then ends.
        """
        from ._subscription import Subscription

        if after is not None and last is not None:
            raise ValueError("give after= or last=, not both")
        if after is not None and (not isinstance(after, int) or after < 0):
            raise ValueError(f"after must be an int >= 0, got {after!r}")
        if last is not None and (not isinstance(last, int) or last < 0):
            raise ValueError(f"last must be an int >= 0, got {last!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if max_lag is not None:
            positive_count("max_lag", max_lag)
        if on_gap not in ("raise", "oldest"):
            raise ValueError(f"on_gap must be 'raise' or 'oldest', got {on_gap!r}")
        return Subscription(self, after, last, policy, max_lag, on_gap)

    async def serve(
        self,
        stream: ServerStream[T],
        *,
        after: int | None = None,
        last: int | None = None,
        policy: Policy = "drop_oldest",
        max_lag: int | None = None,
        on_gap: OnGap = "raise",
        where: Callable[[T], bool] | None = None,
        limit: int | None = None,
    ) -> None:
        """Serve a subscription over a server-streaming handler's ``stream``: one line.

        ``await self.log.serve(stream, after=request.after_seq or None)``. Entries go
        through ``stream.send()``, so a slow client holds its cursor back in the log (the
        policy then applies) instead of growing memory.

        - The log is closed: the remaining entries are sent, then it returns (OK).
        - The server drains (``stream.closing``): it stops at once and raises
          ``Unavailable`` naming the last position sent, so a client with ``resume=``
          continues, on this process or another, exactly there.
        - The client goes away: it returns at once and the cursor is freed.
        - A ``disconnect`` subscriber falls behind: ``ResourceExhausted`` (the status the
          client sees) naming the position to resume after.

        Args:
            stream: the handler's ``ServerStream``.
            after: as [`subscribe()`][grpcstream.Broadcast.subscribe].
            last: as [`subscribe()`][grpcstream.Broadcast.subscribe].
            policy: as [`subscribe()`][grpcstream.Broadcast.subscribe].
            max_lag: as [`subscribe()`][grpcstream.Broadcast.subscribe].
            on_gap: as [`subscribe()`][grpcstream.Broadcast.subscribe].
            where: only entries for which it returns True are sent.
            limit: return after sending this many entries.

        Raises:
            OutOfRange: ``after`` is older than the log holds (with ``on_gap="raise"``).
            Unavailable: the server is draining.
            ResourceExhausted: a ``disconnect`` subscriber fell behind.
        """
        from ._broadcast_serve import serve_subscription

        subscription = self.subscribe(
            after=after, last=last, policy=policy, max_lag=max_lag, on_gap=on_gap
        )
        await serve_subscription(self, subscription, stream, where, limit)

    # -- ending and introspection ----------------------------------------------------------

    async def aclose(self) -> None:
        """End the broadcast: no more publishing; every subscription ends cleanly.

        Each subscription still receives what was published before the close, then its
        iteration ends (``StopAsyncIteration``; ``serve()`` returns and the RPC ends OK).
        Publishers waiting in ``apublish()`` get ``StreamClosedError``. Idempotent.
        With a Redis backend, entries already passed to ``apublish()`` are sent first
        (within ``publish_timeout``), then the read loop stops and the connection closes.
        """
        if self._closed:
            return
        self._closed = True
        self._wake_waiting()
        self._wake_publishers()
        if self._backend is not None:
            await self._backend.stop()
        await asyncio.sleep(0)  # let woken subscribers see the end before we return

    async def start(self) -> None:
        """Connect a Redis-backed log (a no-op for the in-process log). Idempotent.

        A replica (``RedisStreams(tail=True)``) loads the stream's newest ``max_entries``
        entries and starts its one ``XREAD`` loop; a publish-only process just connects.
        Errors come here, at start, not later: nothing waits forever.

        Raises:
            Unavailable: Redis cannot be reached within ``RedisStreams.timeout``.
            FailedPrecondition: the server is older than Redis 7.0.
            ValueError: the URL cannot be used.
            UsageError: called after ``aclose()``.
        """
        if self._backend is not None:
            await self._backend.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._closed

    def statistics(self) -> BroadcastStatistics:
        """A snapshot of the log: size, bytes, oldest and newest position, subscribers."""
        entries = self._entries
        held = len(entries.items) - entries.head
        oldest = entries.position_at(entries.offset + entries.head) if held else None
        return BroadcastStatistics(
            entries=held,
            bytes=entries.bytes,
            oldest=oldest,
            newest=entries.newest,
            published=entries.offset + len(entries.items),
            evicted=entries.evicted,
            subscribers=len(self._subscribers),
            max_entries=entries.max_entries,
            max_bytes=entries.max_bytes,
        )

    @override
    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<Broadcast[{self._type.__name__}] entries={stats.entries} oldest={stats.oldest}"
            f" newest={stats.newest} subscribers={stats.subscribers}>"
        )
