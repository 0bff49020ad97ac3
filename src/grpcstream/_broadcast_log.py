"""The entries a Broadcast holds: one bounded list with a moving head, and its eviction.

The list is compacted now and then, so appending and evicting are amortised O(1). An
entry has an absolute index (the 0-based count of entries appended before it) and a
position: index + 1, or what ``key`` takes from the entry, or what a Redis backend gave
it. Subscribers are cursors over the absolute indexes (see ``Subscription``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from ._validate import positive_count

__all__ = ["EntryLog"]

T = TypeVar("T")

_COMPACT_AT: Final = 1024  # head offset at which the list is compacted (when half is dead)


class EntryLog(Generic[T]):
    """The bounded entry list behind a ``Broadcast``: positions, sizes and eviction.

    It knows nothing of subscribers: the ``Broadcast`` decides whether an eviction may
    happen (``block`` subscribers) and wakes its readers after ``append()``.

    Args:
        entry_type: the entry class, named in errors.
        max_entries: the entry bound.
        max_bytes: the byte bound (``None``: none).
        key: takes each entry's position from the entry (``None``: 1, 2, 3...).
        size: one entry's size in bytes (default: ``entry_type.ByteSize``).

    Raises:
        ValueError, TypeError: a bad bound, as ``Broadcast`` documents.
    """

    __slots__ = (
        "bytes",
        "evicted",
        "head",
        "items",
        "key",
        "last_evicted",
        "max_bytes",
        "max_entries",
        "newest",
        "offset",
        "positions",
        "size",
        "sizes",
    )

    def __init__(
        self,
        entry_type: type[T],
        max_entries: int,
        max_bytes: int | None,
        key: Callable[[T], int] | None,
        size: Callable[[T], int] | None,
    ) -> None:
        positive_count("max_entries", max_entries)
        if max_bytes is not None:
            positive_count("max_bytes", max_bytes)
            if size is None:
                byte_size = getattr(entry_type, "ByteSize", None)
                if byte_size is None:
                    raise TypeError(
                        f"max_bytes needs entry sizes: {entry_type.__name__} has no ByteSize(),"
                        " so pass size=<function returning an entry's size in bytes>"
                    )
                size = byte_size
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.key = key
        self.size = size if max_bytes is not None else None
        self.items: list[T] = []
        # Parallel to items: only kept when positions come from the entries / bytes count.
        # (A Redis backend sets positions to a list: its positions come from Redis.)
        self.positions: list[int] | None = [] if key is not None else None
        self.sizes: list[int] | None = [] if max_bytes is not None else None
        self.head = 0  # index in items of the oldest entry held
        self.offset = 0  # absolute index of items[0]
        self.bytes = 0
        self.evicted = 0
        self.newest: int | None = None
        self.last_evicted: int | None = None  # position of the newest evicted entry

    def position_for(self, entry: T) -> int:
        """The position ``entry`` gets if it is appended next.

        Raises:
            TypeError: ``key()`` returned something else than an int.
            ValueError: the ``key()`` position does not follow the newest one.
        """
        if self.key is None:
            return self.offset + len(self.items) + 1
        position = self.key(entry)
        if not isinstance(position, int):
            raise TypeError(f"key() must return an int position, got {position!r}")
        if self.newest is not None and position <= self.newest:
            raise ValueError(
                f"positions must increase: key() gave {position} after {self.newest};"
                " nothing was published"
            )
        return position

    def entry_size(self, entry: T) -> int:
        """The size of ``entry`` in bytes (0 without ``max_bytes``).

        Raises:
            ValueError: the entry alone is larger than ``max_bytes``.
        """
        if self.size is None:
            return 0
        size = int(self.size(entry))
        assert self.max_bytes is not None
        if size > self.max_bytes:
            raise ValueError(
                f"an entry of {size} bytes cannot fit max_bytes={self.max_bytes};"
                " nothing was published"
            )
        return size

    def evictions(self, size: int) -> tuple[int, int]:
        """How many of the oldest entries must go to fit one more entry, and their bytes."""
        held = len(self.items) - self.head
        drop = max(0, held + 1 - self.max_entries)
        freed = 0
        sizes = self.sizes
        if sizes is not None:
            assert self.max_bytes is not None
            head = self.head
            for index in range(head, head + drop):
                freed += sizes[index]
            while self.bytes + size - freed > self.max_bytes:
                freed += sizes[head + drop]
                drop += 1
        return drop, freed

    def append(self, entry: T, position: int, size: int, drop: int, freed: int) -> None:
        """Append ``entry`` and evict the ``drop`` oldest (``evictions()`` gave both)."""
        self.items.append(entry)
        if self.positions is not None:
            self.positions.append(position)
        if self.sizes is not None:
            self.sizes.append(size)
            self.bytes += size - freed
        self.newest = position
        if drop:
            self._evict(drop)

    def _evict(self, drop: int) -> None:
        self.head += drop
        self.evicted += drop
        self.last_evicted = self.position_at(self.offset + self.head - 1)
        head = self.head
        if head >= _COMPACT_AT and head * 2 >= len(self.items):
            # Amortised O(1): each entry is moved at most once before it is dropped.
            del self.items[:head]
            if self.positions is not None:
                del self.positions[:head]
            if self.sizes is not None:
                del self.sizes[:head]
            self.offset += head
            self.head = 0

    def position_at(self, index: int) -> int:
        """The position of the entry at absolute ``index``."""
        if self.positions is None:
            return index + 1
        return self.positions[index - self.offset]

    def index_after(self, position: int) -> int:
        """Absolute index of the first entry held whose position is after ``position``."""
        oldest = self.offset + self.head
        if self.positions is None:
            return max(oldest, min(position, self.offset + len(self.items)))
        return self.offset + bisect_right(self.positions, position, lo=self.head)
