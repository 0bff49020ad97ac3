"""StreamServicer and the four handler adapters that turn typed handlers into grpc.aio ones.

An adapter (``@grpcstream.server_streaming`` and friends) wraps a handler written against
grpcstream's types (``ServerStream``, ``RequestStream``, ``CallContext``) into the shape
grpc.aio expects, and owns the error boundary: a raised ``RpcError`` becomes that status,
anything else becomes INTERNAL with a generic message (the traceback is logged, never sent).
The wrapped methods still type-check as overrides of the generated servicer base class.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar, cast, overload

import grpc
import grpc.aio

from ._auth import current_principal
from ._batching import BatchedRequestStream, Batching, check_batching, mark_batched
from ._message_types import servicer_message_type
from ._send_queue import DEFAULT_MAX_QUEUED
from ._server_handlers import UNPARSEABLE
from ._server_run import end_with, run_streaming
from ._server_stream import (
    UNPARSEABLE_REQUEST,
    CallContext,
    RequestStream,
    ServerStream,
)
from ._validate import optional_seconds, positive_count

__all__ = [
    "StreamServicer",
    "check_servicer_settings",
    "bidi_streaming",
    "client_streaming",
    "server_streaming",
    "unary",
]

logger = logging.getLogger("grpcstream.server")

S = TypeVar("S")
ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
BatchT = TypeVar("BatchT")
EntryT = TypeVar("EntryT")

ServicerContext = grpc.aio.ServicerContext
RequestsArg = AsyncIterator[ReqT] | Iterator[ReqT]


class StreamServicer:
    """Base class for grpcstream servicers; subclass it with the generated servicer.

    ``class LogService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer)``:
    decorate each method with the adapter for its pattern. ``StreamServer.add()`` connects
    the servicer to the server's drain signal and send-queue settings.

    Attributes:
        max_queued: the send-queue bound of this servicer's ``ServerStream``s.
        idle_timeout: seconds a client-streaming or bidi handler's ``RequestStream``
            waits for the next message before raising ``IdleTimeout`` (None: no limit;
            a handler can change it per stream with ``requests.idle_timeout``).

    ``StreamServer.add()`` raises ``ValueError`` for an invalid ``max_queued`` (not an
    int >= 1) or ``idle_timeout`` (not None or a positive number of seconds).
    """

    max_queued: int = DEFAULT_MAX_QUEUED
    idle_timeout: float | None = None
    _grpcstream_closing: asyncio.Event | None = None
    _grpcstream_active: set[asyncio.Task[Any]] | None = None

    def _grpcstream_bind(self, closing: asyncio.Event, active: set[asyncio.Task[Any]]) -> None:
        self._grpcstream_closing = closing
        self._grpcstream_active = active


def _closing_of(servicer: object) -> asyncio.Event | None:
    return getattr(servicer, "_grpcstream_closing", None)


def _max_queued_of(servicer: object) -> int:
    """The servicer's ``max_queued``; an invalid one raises rather than being replaced."""
    return positive_count("max_queued", getattr(servicer, "max_queued", DEFAULT_MAX_QUEUED))


def _idle_timeout_of(servicer: object) -> float | None:
    return optional_seconds("idle_timeout", getattr(servicer, "idle_timeout", None))


def check_servicer_settings(servicer: object) -> None:
    """Check a servicer's ``max_queued`` and ``idle_timeout`` when it is registered.

    Raises:
        ValueError: either is invalid.
    """
    _max_queued_of(servicer)
    _idle_timeout_of(servicer)


def _active_of(servicer: object) -> set[asyncio.Task[Any]] | None:
    return getattr(servicer, "_grpcstream_active", None)


class _ResponseType:
    """The response class of one decorated method, found once per servicer class."""

    __slots__ = ("_by_class", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._by_class: dict[type, Any] = {}

    def of(self, servicer: object) -> Any:
        cls = type(servicer)
        try:
            return self._by_class[cls]
        except KeyError:
            found = servicer_message_type(servicer, self._name, output=True)
            self._by_class[cls] = found
            return found


def unary(
    handler: Callable[[S, ReqT, CallContext], Awaitable[RespT]],
) -> Callable[[S, ReqT, ServicerContext[ReqT, RespT]], Awaitable[RespT]]:
    """Adapt a request-response handler: ``async def M(self, request, context) -> Reply``.

    Raising an ``RpcError`` subclass ends the RPC with that status, details and trailing
    metadata; any other exception ends it with INTERNAL and a generic message.
    """
    method = handler.__qualname__

    @functools.wraps(handler)
    async def adapted(self: S, request: ReqT, context: ServicerContext[ReqT, RespT]) -> RespT:
        if request is UNPARSEABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNPARSEABLE_REQUEST)
        call = CallContext(context, _closing_of(self), current_principal())
        try:
            return await handler(self, request, call)
        except Exception as exc:
            await end_with(context, exc, method)

    adapted._grpcstream_adapter = True  # type: ignore[attr-defined]
    return adapted


@overload
def client_streaming(
    handler: Callable[[S, RequestStream[ReqT], CallContext], Awaitable[RespT]], /
) -> Callable[[S, RequestsArg[ReqT], ServicerContext[ReqT, RespT]], Awaitable[RespT]]: ...


@overload
def client_streaming(
    *, batching: Batching[BatchT, EntryT]
) -> Callable[
    [Callable[[S, RequestStream[EntryT], CallContext], Awaitable[RespT]]],
    Callable[[S, RequestsArg[BatchT], ServicerContext[BatchT, RespT]], Awaitable[RespT]],
]: ...


def client_streaming(handler: Any = None, /, *, batching: Batching[Any, Any] | None = None) -> Any:
    """Adapt a client-streaming handler: ``async def M(self, requests, context) -> Reply``.

    ``requests`` is a [`RequestStream`][grpcstream.RequestStream] that ends at the client's
    half-close. Errors are handled as in [`unary`][grpcstream.unary].

    Args:
        handler: the handler (``@grpcstream.client_streaming`` used bare).
        batching: for ``@grpcstream.client_streaming(batching=LOG_BATCHES)``: the
            method's requests are batches; ``requests`` yields their entries one by one.

    Raises:
        TypeError: ``batching`` is not a [`Batching`][grpcstream.Batching].
    """
    return _bare_or_batched(handler, batching, _client_streaming)


def _bare_or_batched(
    handler: Any, batching: Batching[Any, Any] | None, adapt: Callable[[Any, Any], Any]
) -> Any:
    """``@decorator`` adapts ``handler`` at once; ``@decorator(batching=...)`` returns one."""
    if handler is not None:
        return adapt(handler, None)
    checked = check_batching(batching)
    return lambda handler: adapt(handler, checked)


def _client_streaming(
    handler: Callable[[S, RequestStream[ReqT], CallContext], Awaitable[RespT]],
    batching: Batching[Any, ReqT] | None,
) -> Callable[[S, RequestsArg[ReqT], ServicerContext[ReqT, RespT]], Awaitable[RespT]]:
    method = handler.__qualname__

    @functools.wraps(handler)
    async def adapted(
        self: S, requests: RequestsArg[ReqT], context: ServicerContext[ReqT, RespT]
    ) -> RespT:
        call = CallContext(context, _closing_of(self), current_principal())
        idle = _idle_timeout_of(self)
        stream = (
            RequestStream(context, idle_timeout=idle)
            if batching is None
            else BatchedRequestStream(context, batching, idle_timeout=idle)
        )
        try:
            return await handler(self, stream, call)
        except Exception as exc:
            await end_with(context, exc, method)

    if batching is not None:
        mark_batched(adapted, batching, "client_streaming")
    adapted._grpcstream_adapter = True  # type: ignore[attr-defined]
    return adapted


@overload
def server_streaming(
    handler: Callable[[S, ReqT, ServerStream[RespT]], Awaitable[None]], /
) -> Callable[[S, ReqT, ServicerContext[ReqT, RespT]], AsyncIterator[RespT]]: ...


@overload
def server_streaming(
    *, batching: Batching[BatchT, EntryT]
) -> Callable[
    [Callable[[S, ReqT, ServerStream[EntryT]], Awaitable[None]]],
    Callable[[S, ReqT, ServicerContext[ReqT, BatchT]], AsyncIterator[BatchT]],
]: ...


def server_streaming(handler: Any = None, /, *, batching: Batching[Any, Any] | None = None) -> Any:
    """Adapt a server-streaming handler: ``async def M(self, request, stream) -> None``.

    ``stream`` is a [`ServerStream`][grpcstream.ServerStream]: ``send()`` from any number of
    tasks. Returning ends the RPC with OK once everything sent is written. When the client
    goes away, pending and later sends raise ``BrokenStreamError`` and spawned producers
    are cancelled; a handler still running ``CLIENT_GONE_GRACE`` seconds later is cancelled.
    Errors are handled as in [`unary`][grpcstream.unary].

    Args:
        handler: the handler (``@grpcstream.server_streaming`` used bare).
        batching: for ``@grpcstream.server_streaming(batching=LOG_BATCHES)``: the
            method's responses are batches; ``stream.send()`` takes single entries and
            the writer packs whatever is queued into each batch. The send-queue bound is
            ``batching.max_queued`` entries.

    Raises:
        TypeError: ``batching`` is not a [`Batching`][grpcstream.Batching].
    """
    return _bare_or_batched(handler, batching, _server_streaming)


def _server_streaming(
    handler: Callable[[S, ReqT, ServerStream[RespT]], Awaitable[None]],
    batching: Batching[Any, RespT] | None,
) -> Callable[[S, ReqT, ServicerContext[ReqT, RespT]], AsyncIterator[RespT]]:
    method = handler.__qualname__
    response_type = _ResponseType(handler.__name__)

    @functools.wraps(handler)
    async def adapted(self: S, request: ReqT, context: ServicerContext[ReqT, RespT]) -> None:
        if request is UNPARSEABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNPARSEABLE_REQUEST)
        stream = ServerStream(
            context,
            _closing_of(self),
            max_queued=_max_queued_of(self) if batching is None else batching.max_queued,
            principal=current_principal(),
            packer=None if batching is None else batching._packer(),
            # With batching the packer checks entries; the response class is the batch.
            message_type=response_type.of(self) if batching is None else None,
        )
        body = handler(self, request, stream)
        await run_streaming(body, stream, context, method, _active_of(self))

    if batching is not None:
        mark_batched(adapted, batching, "server_streaming")
    adapted._grpcstream_adapter = True  # type: ignore[attr-defined]

    # grpc.aio runs coroutine handlers with the reader/writer API; the declared type is
    # what the generated servicer base expects, so the override type-checks.
    return cast(Callable[[S, ReqT, ServicerContext[ReqT, RespT]], AsyncIterator[RespT]], adapted)


@overload
def bidi_streaming(
    handler: Callable[[S, RequestStream[ReqT], ServerStream[RespT]], Awaitable[None]], /
) -> Callable[[S, RequestsArg[ReqT], ServicerContext[ReqT, RespT]], AsyncIterator[RespT]]: ...


@overload
def bidi_streaming(
    *, batching: Batching[BatchT, EntryT]
) -> BidiBatchingDecorator[BatchT, EntryT]: ...


def bidi_streaming(handler: Any = None, /, *, batching: Batching[Any, Any] | None = None) -> Any:
    """Adapt a bidi handler: ``async def M(self, requests, stream) -> None``.

    Read ``requests`` and ``send()`` on ``stream`` concurrently (for instance with
    ``stream.spawn()``). Behaves like [`server_streaming`][grpcstream.server_streaming] otherwise.

    Args:
        handler: the handler (``@grpcstream.bidi_streaming`` used bare).
        batching: for ``@grpcstream.bidi_streaming(batching=LOG_BATCHES)``: applies to
            each direction whose wire type is the batch type (found from the service
            descriptor when ``StreamServer.add()`` registers the servicer).

    Raises:
        TypeError: ``batching`` is not a [`Batching`][grpcstream.Batching].
    """
    if handler is None:
        return BidiBatchingDecorator(check_batching(batching))
    return _bidi_streaming(handler, None)


class BidiBatchingDecorator(Generic[BatchT, EntryT]):
    """What ``bidi_streaming(batching=...)`` returns: it adapts a handler whose requests,
    responses or both are entries, for a method whose wire type there is the batch."""

    __slots__ = ("_batching",)

    def __init__(self, batching: Batching[BatchT, EntryT]) -> None:
        self._batching = batching

    @overload
    def __call__(
        self, handler: Callable[[S, RequestStream[EntryT], ServerStream[EntryT]], Awaitable[None]]
    ) -> Callable[
        [S, RequestsArg[BatchT], ServicerContext[BatchT, BatchT]], AsyncIterator[BatchT]
    ]: ...

    @overload
    def __call__(
        self, handler: Callable[[S, RequestStream[ReqT], ServerStream[EntryT]], Awaitable[None]]
    ) -> Callable[[S, RequestsArg[ReqT], ServicerContext[ReqT, BatchT]], AsyncIterator[BatchT]]: ...

    @overload
    def __call__(
        self, handler: Callable[[S, RequestStream[EntryT], ServerStream[RespT]], Awaitable[None]]
    ) -> Callable[
        [S, RequestsArg[BatchT], ServicerContext[BatchT, RespT]], AsyncIterator[RespT]
    ]: ...

    def __call__(self, handler: Any) -> Any:
        return _bidi_streaming(handler, self._batching)


def _bidi_streaming(
    handler: Callable[[S, RequestStream[ReqT], ServerStream[RespT]], Awaitable[None]],
    batching: Batching[Any, Any] | None,
) -> Callable[[S, RequestsArg[ReqT], ServicerContext[ReqT, RespT]], AsyncIterator[RespT]]:
    method = handler.__qualname__
    response_type = _ResponseType(handler.__name__)

    @functools.wraps(handler)
    async def adapted(
        self: S, requests: RequestsArg[ReqT], context: ServicerContext[ReqT, RespT]
    ) -> None:
        packer = None
        max_queued = _max_queued_of(self)
        idle = _idle_timeout_of(self)
        requests_stream: RequestStream[Any] = RequestStream(context, idle_timeout=idle)
        if record is not None:
            if record.responses:
                packer = record.batching._packer()
                max_queued = record.batching.max_queued
            if record.requests:
                requests_stream = BatchedRequestStream(context, record.batching, idle_timeout=idle)
        stream = ServerStream(
            context,
            _closing_of(self),
            max_queued=max_queued,
            principal=current_principal(),
            packer=packer,
            message_type=response_type.of(self) if packer is None else None,
        )
        body = handler(self, requests_stream, stream)
        await run_streaming(body, stream, context, method, _active_of(self))

    # Bound after the definition on purpose: add() refines the directions of this record.
    record = None if batching is None else mark_batched(adapted, batching, "bidi_streaming")
    adapted._grpcstream_adapter = True  # type: ignore[attr-defined]
    return cast(
        Callable[[S, RequestsArg[ReqT], ServicerContext[ReqT, RespT]], AsyncIterator[RespT]],
        adapted,
    )
