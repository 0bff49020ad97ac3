"""What a handler gets: CallContext, ServerStream (the send side) and RequestStream.

A ``ServerStream`` funnels every ``send()`` through one SendQueue whose writer task owns
``context.write()``, so any number of tasks may send. When the client goes away (cancel,
disconnect, deadline) the queue fails with ``BrokenStreamError``: pending and later sends
raise it, and producer tasks started with ``ServerStream.spawn()`` are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import grpc.aio

from ._base import Metadata
from ._exceptions import (
    IDLE_TIMEOUT,
    BrokenStreamError,
    IdleTimeout,
    InvalidArgument,
    UsageError,
)
from ._grpc_compat import EOF, STREAM_BROKEN_ERRORS
from ._message_types import wrong_type
from ._producers import NO_PRODUCERS, ProducerSet
from ._send_queue import DEFAULT_MAX_QUEUED, SendQueue, SendQueueStatistics
from ._telemetry import attach_request_stream, attach_server_queue, server_half_closed
from ._validate import optional_seconds, positive_count

if TYPE_CHECKING:
    from typing import Self

    from ._batching import Packer

__all__ = ["CallContext", "RequestStream", "ServerStream"]

RespT = TypeVar("RespT")
ReqT = TypeVar("ReqT")

CLIENT_GONE = "the client has gone (cancelled, disconnected or past its deadline)"
SEND_AFTER_RETURN = "send() after the handler returned: the RPC is over and nothing was sent"


def _decode_errors() -> tuple[type[BaseException], ...]:
    try:
        from google.protobuf.message import DecodeError
    except ImportError:  # pragma: no cover - protobuf comes with every generated stub
        return ()
    return (DecodeError,)


_DECODE_ERRORS = _decode_errors()
UNPARSEABLE_REQUEST = "a request message could not be parsed"
_NEVER_CLOSING = asyncio.Event  # a fresh, never-set event when no server drives draining


class CallContext:
    """The per-call view a handler gets: deadline, peer, metadata and drain state.

    Args:
        context: the grpc.aio servicer context of this call.
        closing: the server's drain event (set when the server starts shutting down).
        principal: the authenticated caller, if an auth hook accepted one.
    """

    __slots__ = ("_closing", "_context", "_principal", "_rpc_task")

    def __init__(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        closing: asyncio.Event | None = None,
        principal: object = None,
    ) -> None:
        self._context = context
        self._closing = closing if closing is not None else _NEVER_CLOSING()
        self._principal = principal
        # grpc.aio runs each RPC in its own task and cancels that task when the client
        # goes away, but never turns context.cancelled() True: the task is the witness.
        try:
            self._rpc_task: asyncio.Task[Any] | None = asyncio.current_task()
        except RuntimeError:  # built outside a running loop (a unit test, say)
            self._rpc_task = None

    @property
    def closing(self) -> asyncio.Event:
        """Set when the server starts draining: stop soon and return.

        A unary or client-streaming handler's response ends its call OK. A server-streaming
        or bidi handler that returns during a drain ends its call with ``UNAVAILABLE``
        ("server draining"), so a client with ``resume=`` continues on another server with
        no loss and no duplicate, unless it called ``ServerStream.complete()`` first.
        Streams still open when the server's grace period ends are cancelled.
        """
        return self._closing

    @property
    def principal(self) -> object:
        """What the server's auth hook returned for this caller (``None`` without auth)."""
        return self._principal

    @property
    def grpc_context(self) -> grpc.aio.ServicerContext[Any, Any]:
        """The underlying grpc.aio context, for anything grpcstream does not wrap."""
        return self._context

    def cancelled(self) -> bool:
        """True once the client has gone (cancelled, disconnected) or the deadline passed.

        Also True once the server cancels the call at the end of a drain's grace period.
        """
        if self._context.cancelled():
            return True
        task = self._rpc_task
        if task is not None and task.cancelling():
            return True
        remaining = self._context.time_remaining()
        return remaining is not None and remaining <= 0

    def done(self) -> bool:
        """True once the RPC has ended, for any reason (including `cancelled()`)."""
        return self._context.done() or self.cancelled()

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline, or ``None`` if it set none."""
        return self._context.time_remaining()

    def peer(self) -> str:
        """The client's address, as grpc reports it (``ipv4:127.0.0.1:50112``)."""
        return self._context.peer()

    def invocation_metadata(self) -> Metadata:
        """The metadata the client sent with the call."""
        return tuple((key, value) for key, value in self._context.invocation_metadata() or ())

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        """Trailing metadata to send with the final status (replaces earlier calls)."""
        self._context.set_trailing_metadata(metadata)

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        """Send initial metadata now, before the first message (at most once)."""
        await self._context.send_initial_metadata(metadata)

    def set_compression(self, compression: grpc.Compression) -> None:
        """Compress this call's responses with ``compression`` (``Compression.Gzip``, ...).

        Call it before the first response is sent; it overrides the server's default
        (``StreamServer(compression=...)``) for this call only.

        Raises:
            TypeError: ``compression`` is not a ``grpcstream.Compression``.
        """
        if not isinstance(compression, grpc.Compression):
            raise TypeError(f"compression must be a grpcstream.Compression, got {compression!r}")
        self._context.set_compression(compression)


class ServerStream(CallContext, Generic[RespT]):
    """The send side of a server-streaming or bidi handler; safe from many tasks.

    ``send()`` queues into a bounded send queue drained by one writer task (raw
    ``context.write()`` from two tasks at once fails the RPC with INTERNAL). When the
    handler returns, everything queued is written before the status is sent: OK, or
    UNAVAILABLE "server draining" if the server is draining (``closing`` is set) and the
    handler did not declare its work finished with ``complete()``.

    Args:
        context: the grpc.aio servicer context of this call.
        closing: the server's drain event.
        max_queued: the send-queue bound (``DEFAULT_MAX_QUEUED``).
        principal: the authenticated caller, if any.
        message_type: the method's response class; ``send()`` refuses anything else.
            The handler adapters fill it in from the generated service descriptor.
        packer: set by ``batching=``: entries are sent in batches (and checked by it).
    """

    __slots__ = (
        "_complete",
        "_handler_task",
        "_message_type",
        "_producers",
        "_queue",
    )

    def __init__(
        self,
        context: grpc.aio.ServicerContext[Any, RespT],
        closing: asyncio.Event | None = None,
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
        principal: object = None,
        message_type: type[RespT] | None = None,
        packer: Packer[object, RespT] | None = None,
    ) -> None:
        super().__init__(context, closing, principal)
        self._message_type = message_type
        write = context.write

        async def write_or_break(message: RespT) -> None:
            try:
                await write(message)
            except STREAM_BROKEN_ERRORS as exc:
                raise BrokenStreamError(CLIENT_GONE) from exc
            except Exception as exc:
                if context.done() or context.cancelled():
                    raise BrokenStreamError(CLIENT_GONE) from exc
                raise

        self._queue: SendQueue[RespT] = SendQueue(
            write_or_break,
            max_size=positive_count("max_queued", max_queued),
            name="grpcstream-server-writer",
            packer=packer,
        )
        attach_server_queue(self._queue)
        self._producers = NO_PRODUCERS
        self._handler_task: asyncio.Task[None] | None = None
        self._complete = False

    def complete(self) -> None:
        """Declare that this stream's work is finished: the call ends OK even in a drain.

        Without it, a handler that returns while the server drains (``closing`` is set)
        ends its call with ``UNAVAILABLE`` "server draining", which a client with a
        ``RetryPolicy`` and ``resume=`` treats as "continue elsewhere". Call it when the
        stream reached its natural end (the last entry of a bounded query), not when it
        stopped because of ``closing``. Outside a drain it changes nothing. Idempotent.
        """
        self._complete = True

    @property
    def completed(self) -> bool:
        """True once ``complete()`` was called."""
        return self._complete

    async def send(self, message: RespT) -> None:
        """Queue ``message``, waiting while the send queue is full (backpressure).

        Raises:
            BrokenStreamError: the client has gone; stop producing. Also raised to every
                task that was waiting for room.
            UsageError: the handler already returned.
            TypeError: ``message`` is not the method's response class; nothing was sent.

        Cancellation: atomic; if the waiting task is cancelled the message was not queued.
        """
        expected = self._message_type
        if expected is not None and type(message) is not expected:
            self._wrong_type(message, expected)
        await self._queue.send(message)

    def send_nowait(self, message: RespT) -> None:
        """Queue ``message`` if there is room, without waiting.

        Raises:
            WouldBlock: the send queue is full.
            BrokenStreamError: the client has gone.
            TypeError: ``message`` is not the method's response class; nothing was sent.
        """
        expected = self._message_type
        if expected is not None and type(message) is not expected:
            self._wrong_type(message, expected)
        self._queue.send_nowait(message)

    def _wrong_type(self, message: object, expected: type) -> None:
        if not isinstance(message, expected):
            wrong_type(message, expected, "ServerStream.send()")

    def statistics(self) -> SendQueueStatistics:
        """A snapshot of the send queue: queued, sent, max size and waiting senders."""
        return self._queue.statistics()

    def spawn(self, producer: Coroutine[Any, Any, None], *, name: str | None = None) -> None:
        """Run ``producer`` as a task that ends with this RPC.

        When the handler returns, it waits for spawned producers before the final status.
        If the client goes away, or a producer raises, the other producers are cancelled;
        a producer's exception then ends the RPC as if the handler had raised it.

        Raises:
            UsageError: the RPC is already over.
        """
        if self._queue.closed or self._context.done():
            producer.close()
            raise UsageError("spawn() after the RPC ended")
        if self._producers is NO_PRODUCERS:
            # A producer that meets BrokenStreamError just learnt that the client left,
            # which ends the RPC anyway; any other exception ends it as if the handler
            # had raised it.
            self._producers = ProducerSet(
                "grpcstream-server-producer", self._producer_failed, ignore=(BrokenStreamError,)
            )
        self._producers.spawn(producer, name)

    def _producer_failed(self, error: BaseException) -> None:
        handler = self._handler_task
        if handler is not None and not handler.done():
            handler.cancel()

    @property
    def _producer_error(self) -> BaseException | None:
        return self._producers.error

    # -- used by the handler adapters ------------------------------------------------------

    def _client_gone(self) -> None:
        self._queue.fail(BrokenStreamError(CLIENT_GONE))
        self._producers.cancel()

    async def _finish(self) -> None:
        """Handler returned: wait for producers, then flush everything queued."""
        await self._producers.wait()
        self._producers.raise_error()
        await self._queue.close()
        self._queue.fail(UsageError(SEND_AFTER_RETURN))

    async def _abandon(self, *, flush: bool = False) -> None:
        """Handler failed or was cancelled: stop producers, optionally flush, stop the writer."""
        await self._producers.cancel_and_wait()
        if flush:
            with contextlib.suppress(Exception):
                await self._queue.close()
        await self._queue.aclose()


class RequestStream(Generic[ReqT]):
    """The client's messages in a client-streaming or bidi handler.

    ``async for request in requests`` yields typed messages and ends when the client
    half-closes. Only one task may iterate at a time. A message that does not parse
    raises ``InvalidArgument`` (never a half-parsed message); unless the handler catches
    it, the RPC ends with INVALID_ARGUMENT.

    With an ``idle_timeout`` (the servicer's ``idle_timeout`` attribute, or set on the
    stream), waiting longer than that for the next message raises ``IdleTimeout``; unless
    the handler catches it, the call ends with UNAVAILABLE, which a client's
    ``RetryPolicy`` retries and ``resume=`` continues.
    """

    __slots__ = ("_context", "_done", "_idle_timeout", "_received")

    def __init__(
        self, context: grpc.aio.ServicerContext[ReqT, Any], *, idle_timeout: float | None = None
    ) -> None:
        self._context = context
        self._done = False
        self._received = 0
        self._idle_timeout = optional_seconds("idle_timeout", idle_timeout)
        attach_request_stream(self)

    @property
    def idle_timeout(self) -> float | None:
        """Seconds to wait for the next message before ``IdleTimeout``; None: no limit."""
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, seconds: float | None) -> None:
        self._idle_timeout = optional_seconds("idle_timeout", seconds)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ReqT:
        if self._done:
            raise StopAsyncIteration
        try:
            if self._idle_timeout is None:
                message: object = await self._context.read()
            else:
                async with asyncio.timeout(self._idle_timeout):
                    message = await self._context.read()
        except _DECODE_ERRORS:
            raise InvalidArgument(UNPARSEABLE_REQUEST) from None
        except TimeoutError:
            raise IdleTimeout(
                IDLE_TIMEOUT.format(self._idle_timeout), code=grpc.StatusCode.UNAVAILABLE
            ) from None
        if message is EOF:
            self._done = True
            server_half_closed()
            raise StopAsyncIteration
        self._received += 1
        return message  # type: ignore[return-value]

    async def receive(self) -> ReqT:
        """Return the next message.

        Raises:
            StopAsyncIteration: the client has half-closed.
            InvalidArgument: the next message did not parse as the request type.
        """
        return await self.__anext__()

    @property
    def received(self) -> int:
        """How many messages have been received so far."""
        return self._received
