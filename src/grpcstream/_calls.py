"""Client-side call handles: the shared base, UnaryCall and ResponseStream.

Each handle is an async context manager around one grpc.aio call. Entering it starts the
RPC; leaving it guarantees the call is finished (drained after a half-close, or cancelled)
and that no task grpcstream started for it is still running. Every grpc error crosses into
grpcstream's typed hierarchy here or in ``_exceptions``; nothing raw leaks out. The handles
with a send side live in ``_send_calls``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import grpc.aio
from typing_extensions import override

from ._exceptions import (
    IDLE_TIMEOUT,
    BusyStreamError,
    Cancelled,
    DeadlineExceeded,
    IdleTimeout,
    Internal,
    Metadata,
    RpcError,
    Unknown,
    UsageError,
    rpc_error,
)
from ._retry import Retrier

if TYPE_CHECKING:
    from typing import Self

__all__ = ["CallHandle", "ResponseStream", "UnaryCall"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
_T = TypeVar("_T")
_CallT = TypeVar("_CallT")

CANCELLED_LOCALLY = "the call was cancelled by the client"
CANCELLED_BY_PRODUCER = "the call was cancelled because a spawned producer raised"
NOT_ENTERED = "use the stream as an async context manager: `async with client.{}(...) as s`"
NOT_FINISHED = "the call has not finished yet; read this after the stream has ended"
UNPARSEABLE = "a response from the server could not be deserialized: {}"
HIDDEN_DEADLINE = "Deadline Exceeded (grpc reported it as INTERNAL while a write was pending)"
HIDDEN_BROKEN_STREAM = (
    "the stream ended while a message was being written (grpc.aio hid the server's status "
    "behind INTERNAL: Internal error from Core)"
)

# How grpc words a failure to establish any connection; on a TLS channel that includes
# a handshake the server refused, which grpc may only report as "Socket closed".
_CONNECT_FAILED = "failed to connect to all addresses"
_TLS_WORDS = ("tls", "ssl", "handshake", "certificate")
TLS_CONNECT_HINT = (
    " [grpcstream: this is a TLS channel, so the TLS handshake may have failed: check "
    "ClientTLS ca and server_name, and give it cert and key if the server requires client "
    "certificates]"
)

# grpc.aio replaces a call's real status with this one when a pending write fails in the
# C-core (for example when the deadline expires while flow control blocks the write).
_CORE_INTERNAL = "Internal error from Core"
# How close to the deadline such a failure must be to count as the deadline expiring.
_DEADLINE_SLACK = 0.05


class _Phase(enum.Enum):
    CREATED = "created"
    ENTERED = "entered"
    EXITED = "exited"


# Anything grpc.aio's Call offers that the handles use; the concrete classes differ per
# pattern, and the typed stubs give each its own generic base.
_AnyCall = grpc.aio.Call


class CallHandle:
    """What every client call handle shares: status, metadata, cancellation.

    Not instantiated directly; ``StreamClient`` returns its subclasses.
    """

    __slots__ = (
        "__weakref__",
        "_call",
        "_cancelled_by",
        "_idle_error",
        "_idle_timeout",
        "_method_name",
        "_on_exit",
        "_phase",
        "_producer_error",
        "_producers",
        "_tls",
    )

    _pattern = "stream"  # the StreamClient method that makes this kind of handle

    def __init__(self, method_name: str, on_exit: Callable[[CallHandle], None]) -> None:
        self._call: _AnyCall | None = None
        self._phase = _Phase.CREATED
        self._method_name = method_name
        self._on_exit = on_exit
        self._cancelled_by: BaseException | None = None
        self._producers: set[asyncio.Task[None]] = set()
        self._producer_error: BaseException | None = None
        self._tls = False  # set by StreamClient for calls on a channel from connect(tls=)
        self._idle_timeout: float | None = None  # set by StreamClient (idle_timeout=)
        # The attempt's call that idle_timeout ended, and the error it ended with.
        self._idle_error: tuple[_AnyCall, RpcError] | None = None

    @override
    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._method_name} {self._phase.value}>"

    # -- status and metadata -------------------------------------------------------------

    def _require_call(self) -> _AnyCall:
        if self._call is None:
            raise UsageError(NOT_ENTERED.format(_pattern_name(self)))
        return self._call

    def done(self) -> bool:
        """True once the RPC has finished (with any status, including cancellation)."""
        return self._call is not None and self._call.done()

    async def _ready_call(self) -> _AnyCall:
        """The call, once started; overridden where starting it may still be under way."""
        return self._require_call()

    async def initial_metadata(self) -> Metadata:
        """The server's initial metadata; waits until it arrives (or the call ends)."""
        return _pairs(await (await self._ready_call()).initial_metadata())

    async def trailing_metadata(self) -> Metadata:
        """The server's trailing metadata; waits until the call has finished."""
        return _pairs(await (await self._ready_call()).trailing_metadata())

    async def code(self) -> grpc.StatusCode:
        """The final status code; waits until the call has finished."""
        call = await self._ready_call()
        code = await call.code()
        details = await call.details()
        return self._translate(code, details, None).code if code is not grpc.StatusCode.OK else code

    async def details(self) -> str:
        """The final status message; waits until the call has finished."""
        call = await self._ready_call()
        code = await call.code()
        details = await call.details() or ""
        if code is grpc.StatusCode.OK:
            return details
        return self._translate(code, details, None).details

    def _translate(
        self, code: grpc.StatusCode, details: str | None, trailing_metadata: object
    ) -> RpcError:
        """The typed error for a non-OK status; the one place grpc statuses become errors.

        grpc.aio reports ``INTERNAL: Internal error from Core`` instead of the real status
        when a write that is waiting for flow control fails because the deadline expired.
        That case is reported as the ``DeadlineExceeded`` it is.
        """
        call = self._call
        if code is grpc.StatusCode.INTERNAL and details == _CORE_INTERNAL and call is not None:
            remaining = call.time_remaining()
            if remaining is not None and remaining <= _DEADLINE_SLACK:
                return DeadlineExceeded(
                    HIDDEN_DEADLINE,
                    trailing_metadata=_pairs(trailing_metadata),
                    code=grpc.StatusCode.DEADLINE_EXCEEDED,
                )
            # Otherwise the write met a stream that had just ended and grpc.aio overwrote
            # the real status. Unknown, not a guess: it must not look retryable. (Client
            # and bidi streams then wait for the real one; see _call_status.)
            return Unknown(
                HIDDEN_BROKEN_STREAM,
                trailing_metadata=_pairs(trailing_metadata),
                code=grpc.StatusCode.UNKNOWN,
            )
        if (
            self._tls
            and code is grpc.StatusCode.UNAVAILABLE
            and details is not None
            and details.startswith(_CONNECT_FAILED)
            and not any(word in details.lower() for word in _TLS_WORDS)
        ):
            details += TLS_CONNECT_HINT
        return rpc_error(code, details, trailing_metadata)

    def _from_aio(self, exc: grpc.aio.AioRpcError) -> RpcError:
        return self._translate(exc.code(), exc.details(), exc.trailing_metadata())

    def _unparseable(self) -> Internal:
        """Cancel the RPC because a response did not deserialize, and return the error."""
        error = Internal(UNPARSEABLE.format(self._method_name), code=grpc.StatusCode.INTERNAL)
        self._cancel(error)
        return error

    def cancel(self) -> bool:
        """Cancel the RPC now. Idempotent; safe from any task or from a callback.

        The server sees CANCELLED. From then on every operation of this call raises
        ``Cancelled``: pending and later ``send()`` calls, reading the responses,
        ``close_and_receive()``, and leaving the ``async with`` block.

        Returns:
            True if this call cancelled the RPC, False if it had already finished.
        """
        return self._cancel(Cancelled(CANCELLED_LOCALLY, code=grpc.StatusCode.CANCELLED))

    def _cancel(self, reason: BaseException) -> bool:
        call = self._call
        if call is None:
            return False
        if call.done():
            # Between attempts of a retried call the current attempt is over, but the call
            # is not: cancelling must stop the next attempt.
            if not self._retrying() or self._cancelled_by is not None:
                return False
            self._cancelled_by = reason
            self._fail_sending(self._send_error())
            return True
        if self._cancelled_by is None:
            self._cancelled_by = reason
        self._fail_sending(self._send_error())
        return call.cancel()

    def _send_error(self) -> BaseException:
        """What senders get once the call is cancelled.

        The typed error that cancelled it (``Cancelled`` after ``cancel()``), or
        ``Cancelled`` when a spawned producer's exception did: that exception is raised
        once, from reading or leaving the block, not again from every ``send()``.
        """
        reason = self._cancelled_by
        if isinstance(reason, RpcError):
            return reason
        return Cancelled(CANCELLED_BY_PRODUCER, code=grpc.StatusCode.CANCELLED)

    def _retrying(self) -> bool:
        """True while a retry policy may still start another attempt."""
        return self._phase is _Phase.ENTERED and getattr(self, "_retrier", None) is not None

    def _fail_sending(self, error: BaseException) -> None:
        """Overridden by handles with a send side."""

    # -- producer tasks --------------------------------------------------------------------

    def spawn(self, producer: Coroutine[Any, Any, None], *, name: str | None = None) -> None:
        """Run ``producer`` as a task that lives exactly as long as this stream.

        Leaving the ``async with`` block normally waits for spawned producers before it
        half-closes. If a producer raises, the RPC is cancelled, the other producers are
        cancelled, and the exception is raised to the caller (from iteration,
        ``close_and_receive()``, or the end of the block). Leaving the block early cancels
        the producers.

        Raises:
            UsageError: the stream is not open (outside its ``async with`` block).
        """
        if self._phase is not _Phase.ENTERED:
            producer.close()
            raise UsageError("spawn() needs an open stream (inside its `async with` block)")
        task = asyncio.get_running_loop().create_task(
            producer, name=name or f"grpcstream-producer {self._method_name}"
        )
        self._producers.add(task)
        task.add_done_callback(self._producer_done)

    def _producer_done(self, task: asyncio.Task[None]) -> None:
        self._producers.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self._producer_error is None:
            self._producer_error = error
            self._cancel(error)
            for other in self._producers:
                other.cancel()

    async def _wait_producers(self) -> None:
        while self._producers:
            await asyncio.wait(list(self._producers))
        self._raise_producer_error()

    def _raise_producer_error(self) -> None:
        if self._producer_error is not None:
            raise self._producer_error

    async def _cancel_producers(self) -> None:
        tasks = list(self._producers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # -- lifecycle -------------------------------------------------------------------------

    def _check_unused(self) -> None:
        if self._phase is not _Phase.CREATED:
            raise UsageError(f"{self!r} was already used; start a new call instead")

    async def _open_first(self, opening: Awaitable[_CallT]) -> _CallT:
        """Await the first attempt's call (its token may be fetched meanwhile).

        If that fails (the token source raised, the client closed), the handle is done:
        the client stops tracking it and the error propagates from ``__aenter__``.
        """
        try:
            return await opening
        except BaseException:
            self._phase = _Phase.EXITED
            self._on_exit(self)
            raise

    def _enter(self, call: _AnyCall) -> None:
        self._check_unused()
        self._call = call
        self._phase = _Phase.ENTERED

    def _locally_cancelled_error(self) -> BaseException | None:
        """The error to raise when grpc.aio reports our own cancel() as CancelledError.

        grpc.aio raises ``asyncio.CancelledError`` from ``read()`` once the call was
        cancelled locally, which would look like the *task* being cancelled. If the task is
        not being cancelled, the cancellation was ours: report it as a typed error instead.
        """
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return None
        if self._producer_error is not None:
            return self._producer_error
        if self._cancelled_by is not None:
            return self._cancelled_by
        return Cancelled(CANCELLED_LOCALLY, code=grpc.StatusCode.CANCELLED)

    async def _status_error(self) -> RpcError | None:
        """The call's final status as a typed error, or None if it ended OK."""
        call = self._require_call()
        code = await call.code()
        if code is grpc.StatusCode.OK:
            return None
        return self._translate(code, await call.details(), await call.trailing_metadata())

    async def _close(self, exc: BaseException | None) -> None:
        """Leave the block: finish or cancel the call, then reap every task we started."""
        try:
            if exc is None:
                await self._finish()
            else:
                self._cancel(Cancelled(CANCELLED_LOCALLY, code=grpc.StatusCode.CANCELLED))
        except BaseException:
            self._cancel(Cancelled(CANCELLED_LOCALLY, code=grpc.StatusCode.CANCELLED))
            raise
        finally:
            self._phase = _Phase.EXITED
            try:
                await self._cancel_producers()
                await self._release()
            finally:
                # Even when the exiting task is cancelled while reaping (SendQueue.aclose()
                # re-raises the cancellation), the client must stop counting this handle.
                self._on_exit(self)

    async def _finish(self) -> None:
        """Normal exit; overridden per pattern."""

    async def _release(self) -> None:
        """Wait for helper tasks (the writer) to end; overridden by senders."""


class UnaryCall(CallHandle, Generic[RespT]):
    """A request-response call in flight: ``await`` it for the response.

    Returned by ``StreamClient.unary_call()``. The RPC starts at once; awaiting the handle
    (any number of times, from any task) returns the response or raises its typed error.
    Unlike ``StreamClient.unary()`` it keeps the status and metadata readable:
    ``initial_metadata()``, ``trailing_metadata()``, ``code()`` and ``details()``.
    ``cancel()`` cancels the RPC; a task awaiting it then gets ``Cancelled``.
    """

    __slots__ = ("_opening",)
    _pattern = "unary_call"

    def __init__(
        self,
        method_name: str,
        call: grpc.aio.UnaryUnaryCall[Any, RespT],
        on_exit: Callable[[CallHandle], None],
    ) -> None:
        super().__init__(method_name, on_exit)
        self._opening: asyncio.Task[None] | None = None
        self._enter(call)
        call.add_done_callback(lambda _: on_exit(self))

    @classmethod
    def opening(
        cls,
        method_name: str,
        pending: asyncio.Future[_T],
        start: Callable[[_T], grpc.aio.UnaryUnaryCall[Any, RespT]],
        on_exit: Callable[[CallHandle], None],
    ) -> UnaryCall[RespT]:
        """A handle whose call is ``start(result)`` once ``pending`` (a token) is ready.

        A task starts the call as soon as ``pending`` is done; awaiting the handle waits
        for that and raises what ``pending`` or ``start`` raised. ``cancel()`` meanwhile
        cancels ``pending`` and the call never starts.
        """
        self = cls.__new__(cls)
        CallHandle.__init__(self, method_name, on_exit)
        opening = asyncio.get_running_loop().create_task(
            self._open(pending, start), name=f"grpcstream-open {method_name}"
        )
        self._opening = opening

        def opened(task: asyncio.Task[None]) -> None:
            pending.cancel()  # no-op once it is done; stops it if the task never ran
            if task.cancelled() or task.exception() is not None:  # retrieved: awaiters re-raise
                self._phase = _Phase.EXITED
                on_exit(self)

        opening.add_done_callback(opened)
        return self

    async def _open(
        self,
        pending: asyncio.Future[_T],
        start: Callable[[_T], grpc.aio.UnaryUnaryCall[Any, RespT]],
    ) -> None:
        call = start(await pending)
        self._enter(call)
        on_exit = self._on_exit
        call.add_done_callback(lambda _: on_exit(self))

    @override
    async def _ready_call(self) -> _AnyCall:
        if self._call is None and self._opening is not None:
            await self._opening
        return self._require_call()

    @override
    def done(self) -> bool:
        """True once the RPC has finished, or failed to start."""
        opening = self._opening
        if self._call is None and opening is not None:
            return opening.done()
        return super().done()

    @override
    def _cancel(self, reason: BaseException) -> bool:
        opening = self._opening
        if self._call is None and opening is not None and not opening.done():
            if self._cancelled_by is None:
                self._cancelled_by = reason
            return opening.cancel()
        return super()._cancel(reason)

    def __await__(self) -> Generator[Any, None, RespT]:
        return self._response().__await__()

    async def _response(self) -> RespT:
        try:
            call: grpc.aio.UnaryUnaryCall[Any, RespT] = await self._ready_call()  # type: ignore[assignment]
            response = await call
        except grpc.aio.AioRpcError as exc:
            raise self._from_aio(exc) from exc
        except asyncio.CancelledError:
            replacement = self._locally_cancelled_error()
            if replacement is None:
                raise  # the awaiting task was cancelled; grpc.aio cancelled the RPC
            raise replacement from None
        if response is None:
            raise self._unparseable()  # grpc.aio logged the deserializer's error
        return response

    @override
    def spawn(self, producer: Coroutine[Any, Any, None], *, name: str | None = None) -> None:
        """Not available: a unary call has no request stream to produce for.

        Raises:
            UsageError: always.
        """
        producer.close()
        raise UsageError("spawn() is for streams; a unary call has nothing to produce")


class ResponseStream(CallHandle, Generic[RespT]):
    """A server-streaming call: ``async for`` yields typed responses until the server ends.

    Returned by ``StreamClient.server_stream()``; use it as ``async with ... as entries``.
    Iteration ends with ``StopAsyncIteration`` at the server's OK status; any other status
    raises the matching ``RpcError`` subclass. Leaving the block before the end (``break``,
    an exception, task cancellation) cancels the RPC. Only one task may iterate at a time.

    With a ``RetryPolicy``, a failure before the first response re-opens the call; with a
    ``resume`` hook too, a failure after some responses re-opens it from the last one
    received, so iteration sees every response exactly once.
    """

    __slots__ = (
        "_eof",
        "_last",
        "_open_call",
        "_reading",
        "_received",
        "_received_at_reopen",
        "_resumable",
        "_retrier",
        "_timeout",
    )
    _pattern = "server_stream"

    def __init__(
        self,
        method_name: str,
        open_call: Callable[
            [RespT | None, float | None], Awaitable[grpc.aio.UnaryStreamCall[Any, RespT]]
        ],
        on_exit: Callable[[CallHandle], None],
        *,
        retrier: Retrier | None = None,
        resumable: bool = False,
        timeout: float | None = None,
    ) -> None:
        super().__init__(method_name, on_exit)
        self._open_call = open_call
        self._retrier = retrier
        self._resumable = resumable
        self._timeout = timeout
        self._eof = False
        self._reading = False
        self._received = 0
        self._last: RespT | None = None
        self._received_at_reopen = 0

    async def __aenter__(self) -> Self:
        self._check_unused()
        timeout = self._retrier.attempt_timeout() if self._retrier else self._timeout
        self._enter(await self._open_first(self._open_call(None, timeout)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RespT:
        if self._eof:
            raise StopAsyncIteration
        if self._reading:
            raise BusyStreamError("another task is already iterating this stream")
        self._reading = True
        try:
            while True:
                try:
                    message = await _read(self, self._require_call())
                    break
                except RpcError as error:
                    if not await self._reopen_after(error):
                        raise
        finally:
            self._reading = False
        if message is grpc.aio.EOF:
            self._eof = True
            raise StopAsyncIteration
        self._received += 1
        self._last = message  # type: ignore[assignment]
        return message  # type: ignore[return-value]

    async def _reopen_after(self, error: RpcError) -> bool:
        retrier = self._retrier
        if self._cancelled_by is not None:
            raise self._cancelled_by
        if retrier is None:
            return False
        if self._last is not None and not self._resumable:
            return False  # a silent restart would deliver the same responses twice
        if self._received > self._received_at_reopen:
            retrier.made_progress()  # new entries arrived: backoff and attempts restart
            self._received_at_reopen = self._received
        if not await retrier.backoff(error):
            return False
        if self._cancelled_by is not None:
            raise self._cancelled_by  # cancel() came during the backoff
        call = await self._open_call(self._last, retrier.attempt_timeout())
        self._call = call
        if self._cancelled_by is not None:
            call.cancel()  # cancel() came while the new attempt was being opened
        return True

    @property
    def received(self) -> int:
        """How many responses have been received so far."""
        return self._received

    @override
    async def _finish(self) -> None:
        if not self._eof:
            self.cancel()  # the caller left early: nobody will read the rest


async def _read(handle: CallHandle, call: Any) -> object:
    """One ``call.read()``, with grpc's errors and local cancellation made typed."""
    try:
        if handle._idle_timeout is None:
            message = await call.read()
        else:
            message = await _read_within(handle, call, handle._idle_timeout)
    except grpc.aio.AioRpcError as exc:
        handle._raise_producer_error()
        raise handle._from_aio(exc) from exc
    except asyncio.CancelledError:
        replacement = handle._locally_cancelled_error()
        if replacement is None:
            raise
        raise replacement from None
    if message is None:
        # grpc.aio logs the deserializer's exception and hands out None, leaving the
        # stream open; a protobuf deserializer never returns None otherwise.
        raise handle._unparseable()
    return message


async def _read_within(handle: CallHandle, call: Any, idle: float) -> object:
    """``call.read()``, ending the call with ``IdleTimeout`` if nothing comes for ``idle`` s.

    A plain timer, not ``asyncio.timeout()``: the handle must know the call ended because
    of idleness *before* grpc.aio cancels it (its done-callbacks run during the cancel),
    so that writers and callbacks see a retryable ``IdleTimeout``, not a ``Cancelled``.
    """
    task = asyncio.current_task()
    assert task is not None

    def expire() -> None:
        handle._idle_error = (
            call,
            IdleTimeout(IDLE_TIMEOUT.format(idle), code=grpc.StatusCode.UNAVAILABLE),
        )
        task.cancel()  # grpc.aio's read() cancels the RPC when it is interrupted

    timer = asyncio.get_running_loop().call_later(idle, expire)
    try:
        return await call.read()
    except asyncio.CancelledError:
        expired = handle._idle_error
        if expired is not None and expired[0] is call and task.uncancel() == 0:
            raise expired[1] from None
        raise
    finally:
        timer.cancel()


def _pairs(metadata: object) -> Metadata:
    if metadata is None:
        return ()
    return tuple((str(key), value) for key, value in metadata)  # type: ignore[attr-defined]


def _pattern_name(handle: CallHandle) -> str:
    return handle._pattern
