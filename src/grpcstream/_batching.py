"""Coalescing: many entries travel as one batch message, the API stays entry by entry.

grpc.aio spends tens of microseconds of CPU per message on each side whatever its size,
so a stream of small entries tops out at 10-20k messages/s. A method whose wire message
is a batch (``message LogBatch { repeated LogEntry entries = 1; }``) moves hundreds of
entries per write. ``Batching`` declares such a method once; the send queue's single
writer then packs everything queued (up to ``max_entries``/``max_bytes``) into one batch
per write, and the readers hand out the entries one at a time. Nothing waits for a batch
to fill unless ``linger`` asks for it: at light load a batch holds one entry.

On the wire these are plain protobuf messages: a peer in another language reads and
writes ordinary batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import grpc.aio
from typing_extensions import override

from ._exceptions import UsageError
from ._options import DEFAULT_MAX_MESSAGE_BYTES
from ._server_stream import RequestStream
from ._validate import non_negative_seconds, positive_count

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

__all__ = [
    "DEFAULT_BATCH_MAX_ENTRIES",
    "Batching",
    "BatchedCall",
    "BatchedRequestStream",
    "Packer",
    "check_batching",
    "check_servicer_batching",
]

BatchT = TypeVar("BatchT")
EntryT = TypeVar("EntryT")
ReqT = TypeVar("ReqT")
BatchT_co = TypeVar("BatchT_co", covariant=True)

DEFAULT_BATCH_MAX_ENTRIES = 256
"""Default upper bound of entries per batch (and of a batched stream's send queue)."""

_WIRE_TYPE_LENGTH_DELIMITED = 2


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _is_message_class(value: object) -> bool:
    return isinstance(value, type) and hasattr(value, "DESCRIPTOR") and hasattr(value, "ByteSize")


class Batching(Generic[BatchT, EntryT]):
    """Declares a batched method: its wire message ``BatchT`` carries ``EntryT`` entries.

    ``Batching(LogBatch, LogEntry, field="entries")`` for
    ``message LogBatch { repeated LogEntry entries = 1; }``. Pass it as ``batching=`` to
    the handler decorators and to ``StreamClient.server_stream`` / ``client_stream`` /
    ``bidi_stream``: handlers and callers then send and receive single entries.

    The writer task of a batched stream takes everything queued, up to ``max_entries``
    entries and ``max_bytes`` bytes, and sends it as one batch. At light load a batch is
    one entry and goes out at once; under load batches grow by themselves.

    Args:
        batch_type: the generated batch message class (``LogBatch``).
        entry_type: the generated entry message class (``LogEntry``).
        field: the ``repeated`` field of ``batch_type`` whose type is ``entry_type``.
        max_entries: most entries in one batch (at least 1).
        max_bytes: most bytes in one serialized batch, the per-entry framing (tag and
            length) included. Keep it at or below the smaller of the sender's max send
            and the receiver's max receive message size; the default, 4 MiB, is
            grpcstream's and gRPC's default. A single entry larger than that is refused by
            ``send()`` with ``ValueError``. Measuring costs about one serialization of
            each entry (``ByteSize()``, roughly 0.3-0.7 µs for a 150-byte entry);
            ``None`` skips it and bounds batches by ``max_entries`` alone: only for
            entries whose size is known to stay far below the limit.
        linger: seconds the writer waits for more entries before sending a batch that is
            not full (default 0: never; batches form only from what queued up while the
            previous write was in flight). A few milliseconds trade latency for fuller
            batches at moderate load.
        max_queued: the send-queue bound of batched streams, in entries (default
            ``max_entries``), used unless the call or servicer asks for another. The
            batch being written does not count against it.

    Raises:
        TypeError: ``batch_type`` or ``entry_type`` is not a protobuf message class.
        ValueError: ``field`` does not exist, is not ``repeated``, or its type is not
            ``entry_type``; or a bound that is not positive.
    """

    __slots__ = (
        "_tag_size",
        "batch_type",
        "entry_type",
        "field",
        "linger",
        "max_bytes",
        "max_entries",
        "max_queued",
    )

    def __init__(
        self,
        batch_type: type[BatchT],
        entry_type: type[EntryT],
        *,
        field: str = "entries",
        max_entries: int = DEFAULT_BATCH_MAX_ENTRIES,
        max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
        linger: float = 0.0,
        max_queued: int | None = None,
    ) -> None:
        for name, value in (("batch_type", batch_type), ("entry_type", entry_type)):
            if not _is_message_class(value):
                raise TypeError(f"{name} must be a generated protobuf message class, got {value!r}")
        descriptor: Any = getattr(batch_type, "DESCRIPTOR")  # noqa: B009 - checked above
        entry_name = getattr(entry_type, "DESCRIPTOR").full_name  # noqa: B009
        spec = descriptor.fields_by_name.get(field)
        if spec is None:
            raise ValueError(f"{descriptor.full_name} has no field {field!r}")
        if not _field_is_repeated(spec):
            raise ValueError(
                f"{descriptor.full_name}.{field} is not repeated: a batch field must be "
                f"'repeated {entry_name}'"
            )
        if spec.message_type is None or spec.message_type.full_name != entry_name:
            found = spec.message_type.full_name if spec.message_type else spec.type
            raise ValueError(
                f"{descriptor.full_name}.{field} holds {found}, not {entry_name}: a batch "
                f"field must be 'repeated {entry_name}'"
            )
        positive_count("max_entries", max_entries)
        if max_bytes is not None:
            positive_count("max_bytes", max_bytes)
        if max_queued is not None:
            positive_count("max_queued", max_queued)
        linger = non_negative_seconds("linger", linger)
        self.batch_type = batch_type
        self.entry_type = entry_type
        self.field = field
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.linger = float(linger)
        self.max_queued = max_entries if max_queued is None else max_queued
        self._tag_size = _varint_size(spec.number << 3 | _WIRE_TYPE_LENGTH_DELIMITED)

    @override
    def __repr__(self) -> str:
        return (
            f"Batching({self.batch_type.__name__}, {self.entry_type.__name__}, "
            f"field={self.field!r}, max_entries={self.max_entries}, "
            f"max_bytes={self.max_bytes}, linger={self.linger})"
        )

    def pack(self, entries: list[EntryT]) -> BatchT:
        """One batch message holding ``entries`` (what a peer without grpcstream sends)."""
        batch = self.batch_type()
        getattr(batch, self.field).extend(list(entries))
        return batch

    def unpack(self, batch: BatchT) -> list[EntryT]:
        """The entries of one batch message, in order."""
        return list(getattr(batch, self.field))

    def framed_size(self, entry_size: int) -> int:
        """Bytes one entry of ``entry_size`` bytes adds to a batch (tag and length included)."""
        return self._tag_size + _varint_size(entry_size) + entry_size

    def _packer(self) -> Packer[BatchT, EntryT]:
        return Packer(self)

    # -- which directions of a method carry batches ---------------------------------------

    def _directions(self, method: str) -> tuple[bool, bool] | None:
        """(requests batched, responses batched) of ``/pkg.Service/Method``; None if unknown."""
        service_name, _, method_name = method.lstrip("/").partition("/")
        return self._directions_of(service_name, method_name)

    def _directions_of(self, service_name: str, method_name: str) -> tuple[bool, bool] | None:
        from google.protobuf import descriptor_pool

        try:
            service = descriptor_pool.Default().FindServiceByName(service_name)
        except KeyError:
            return None
        spec = service.methods_by_name.get(method_name)
        if spec is None:
            return None
        name = getattr(self.batch_type, "DESCRIPTOR").full_name  # noqa: B009
        return spec.input_type.full_name == name, spec.output_type.full_name == name

    def _check_call(self, method: str, pattern: str) -> tuple[bool, bool]:
        """The batched directions of a client call; UsageError if it carries no batch."""
        directions = self._directions(method)
        wanted = {"server_stream": (False, True), "client_stream": (True, False)}.get(pattern)
        if directions is None:
            return wanted or (True, True)  # not in the descriptor pool: trust the caller
        requests, responses = directions
        if wanted is not None and not (requests, responses)[wanted.index(True)]:
            side = "response" if wanted[1] else "request"
            raise UsageError(
                f"{method}: its {side} type is not {self.batch_type.__name__}, so "
                f"batching={self!r} does not apply"
            )
        if not requests and not responses:
            raise UsageError(
                f"{method} carries no {self.batch_type.__name__} in either direction, so "
                f"batching={self!r} does not apply"
            )
        return requests, responses


def _field_is_repeated(spec: Any) -> bool:
    repeated = getattr(spec, "is_repeated", None)
    if isinstance(repeated, bool):
        return repeated
    return bool(spec.label == spec.LABEL_REPEATED)  # protobuf before is_repeated


class Packer(Generic[BatchT_co, EntryT]):
    """Per-stream packing state used by the send queue's writer task.

    ``admit()`` runs in ``send()``: it refuses an entry of the wrong type or one that
    could never fit a batch, so that error belongs to that send alone. ``pack()`` runs in
    the writer: it moves up to ``max_entries`` entries (and ``max_bytes``) out of the
    queue into one batch. Sizes are only measured one by one when the largest entry seen
    so far could make a full batch exceed ``max_bytes``; otherwise a count suffices.
    """

    __slots__ = (
        "_batch_type",
        "_batching",
        "_entry_type",
        "_field",
        "_largest",
        "_max_bytes",
        "_safe_count",
        "linger",
        "max_entries",
    )

    def __init__(self, batching: Batching[BatchT_co, EntryT]) -> None:
        self._batching = batching
        self._batch_type = batching.batch_type
        self._entry_type = batching.entry_type
        self._field = batching.field
        self._max_bytes = batching.max_bytes
        self.max_entries = batching.max_entries
        self.linger = batching.linger
        self._largest = 0
        self._safe_count = batching.max_entries  # entries that fit whatever their size

    def admit(self, entry: object) -> None:
        """Check one entry before it is queued.

        Raises:
            TypeError: ``entry`` is not an instance of the entry type.
            ValueError: ``entry`` alone is larger than ``max_bytes`` with its framing.
        """
        # The fast path is one type comparison and one ByteSize(): it runs for every entry.
        if type(entry) is not self._entry_type:
            self._check_type(entry)
        if self._max_bytes is not None:
            size: int = entry.ByteSize()  # type: ignore[attr-defined]
            if size > self._largest:
                self._grow(size, self._max_bytes)

    def _check_type(self, entry: object) -> None:
        if not isinstance(entry, self._entry_type):
            raise TypeError(
                f"this stream sends {self._entry_type.__name__} entries "
                f"(batched in {self._batch_type.__name__}), got {type(entry).__name__}"
            )

    def _grow(self, size: int, max_bytes: int) -> None:
        framed = self._batching.framed_size(size)
        if framed > max_bytes:
            raise ValueError(
                f"entry of {size} bytes does not fit a batch of at most "
                f"{max_bytes} bytes (Batching.max_bytes): nothing was sent"
            )
        self._largest = size
        self._safe_count = min(self.max_entries, max_bytes // framed)

    def pack(self, buffer: deque[EntryT]) -> tuple[BatchT_co, int]:
        """Move the next batch's entries out of ``buffer``; return the batch and its count."""
        available = len(buffer)
        take = available if available < self.max_entries else self.max_entries
        if take > self._safe_count:
            take = self._count_fitting(buffer, take)
        if take == available:
            items = list(buffer)
            buffer.clear()
        else:
            popleft = buffer.popleft
            items = [popleft() for _ in range(take)]
        batch = self._batch_type()
        # extend() from a list: protobuf's fast path (from a deque it costs ~3x as much).
        getattr(batch, self._field).extend(items)
        return batch, take

    def _count_fitting(self, buffer: deque[EntryT], most: int) -> int:
        room = self._max_bytes or 0
        framed_size = self._batching.framed_size
        count = 0
        for entry in buffer:
            room -= framed_size(entry.ByteSize())  # type: ignore[attr-defined]
            if room < 0 or count == most:
                break
            count += 1
        return max(1, count)  # admit() guaranteed that one entry always fits


class BatchedCall:
    """A client call whose requests are batches, for the writes that bypass the writer.

    The packing writer hands it batches, which pass through; a lone entry (one of the
    messages a bidi ``resume`` hook returns) is packed into a batch of one. Everything
    else is the wrapped call's.
    """

    __slots__ = ("_batching", "_call")

    def __init__(self, call: Any, batching: Batching[Any, Any]) -> None:
        self._call = call
        self._batching = batching

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    async def write(self, message: Any) -> None:
        """Write a batch, or one entry as a batch of one."""
        if type(message) is self._batching.entry_type:
            message = self._batching.pack([message])
        await self._call.write(message)

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """Run ``callback(self)`` when the call ends (handles compare calls by identity)."""
        self._call.add_done_callback(lambda _call: callback(self))

    def __await__(self) -> Generator[Any, None, Any]:
        return self._call.__await__()  # type: ignore[no-any-return]


class BatchedRequestStream(RequestStream[EntryT]):
    """The entries of a batched request stream, one at a time, for a handler.

    Messages that are not batches (a bidi method whose requests are not batched) are
    handed out as they are. ``received`` counts entries.
    """

    __slots__ = ("_batch_type", "_entries", "_field", "_pending")

    def __init__(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        batching: Batching[Any, EntryT],
        *,
        idle_timeout: float | None = None,
    ):
        super().__init__(context, idle_timeout=idle_timeout)
        self._batch_type = batching.batch_type
        self._field = batching.field
        self._pending: Iterator[EntryT] | None = None
        self._entries = 0

    @override
    async def __anext__(self) -> EntryT:
        pending = self._pending
        if pending is not None:
            entry = next(pending, None)
            if entry is not None:
                self._entries += 1
                return entry
            self._pending = None
        while True:
            message: Any = await super().__anext__()
            if type(message) is not self._batch_type:
                self._entries += 1
                return cast(EntryT, message)
            pending = iter(getattr(message, self._field))
            first: EntryT | None = next(pending, None)
            if first is not None:
                self._pending = pending
                self._entries += 1
                return first

    @property
    @override
    def received(self) -> int:
        """How many entries have been received so far."""
        return self._entries


class _MethodBatching:
    """What an adapted handler knows about its batching (directions refined at add())."""

    __slots__ = ("batching", "pattern", "requests", "responses")

    def __init__(self, batching: Batching[Any, Any], pattern: str) -> None:
        self.batching = batching
        self.pattern = pattern
        self.requests = pattern != "server_streaming"
        self.responses = pattern != "client_streaming"


def mark_batched(adapted: Any, batching: Batching[Any, Any], pattern: str) -> _MethodBatching:
    """Attach the batching declaration to an adapted handler; return the shared record."""
    record = _MethodBatching(batching, pattern)
    adapted._grpcstream_batching = record
    return record


def check_batching(batching: object) -> Batching[Any, Any]:
    """``batching`` if it is a ``Batching``.

    Raises:
        TypeError: it is anything else.
    """
    if not isinstance(batching, Batching):
        raise TypeError(f"batching must be a grpcstream.Batching, got {batching!r}")
    return batching


def check_servicer_batching(servicer: object, service_name: str) -> None:
    """At registration: check each batched handler against its method's wire types.

    Raises:
        UsageError: a batched handler's method does not carry the batch type in the
            direction(s) its pattern batches.
    """
    if not service_name:
        return
    for name in dir(type(servicer)):
        record = getattr(getattr(type(servicer), name, None), "_grpcstream_batching", None)
        if not isinstance(record, _MethodBatching):
            continue
        directions = record.batching._directions_of(service_name, name)
        if directions is None:
            continue
        requests, responses = directions
        pattern = record.pattern
        if pattern == "bidi_streaming":
            if not (requests or responses):
                raise UsageError(
                    f"{service_name}.{name} carries no {record.batching.batch_type.__name__} "
                    f"in either direction: batching= does not apply"
                )
            record.requests, record.responses = requests, responses
            continue
        ok = responses if pattern == "server_streaming" else requests
        if not ok:
            side = "response" if pattern == "server_streaming" else "request"
            raise UsageError(
                f"{service_name}.{name}: its {side} type is not "
                f"{record.batching.batch_type.__name__}: batching= does not apply"
            )
