"""CallHandle: what every client call handle shares.

Each handle is an async context manager around one grpc.aio call (or one call per retry
attempt). Entering it starts the RPC; leaving it guarantees the call is finished
(drained after a half-close, or cancelled) and that no task grpcstream started for it is
still running. The receive half is in ``_client_receive``, the send half in
``_client_send``; statuses become typed errors in ``_grpc_compat``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Coroutine
from typing import Any, Generic, NoReturn

import grpc
import grpc.aio
from typing_extensions import TypeVar, override

from ._base import AsyncResource, Metadata, to_metadata
from ._client_settings import CallSettings
from ._exceptions import Cancelled, Internal, RpcError, UsageError
from ._grpc_compat import from_aio, translate
from ._producers import NO_PRODUCERS, ProducerSet

__all__ = ["CallHandle"]

# Bare ``CallHandle`` (in an annotation) means a handle of any call type.
CallT = TypeVar("CallT", bound=grpc.aio.Call, default=Any)
_T = TypeVar("_T")

CANCELLED_LOCALLY = "the call was cancelled by the client"
CANCELLED_BY_PRODUCER = "the call was cancelled because a spawned producer raised"
NOT_ENTERED = "use the stream as an async context manager: `async with client.{}(...) as s`"
NOT_FINISHED = "the call has not finished yet; read this after the stream has ended"
UNPARSEABLE = "a response from the server could not be deserialized: {}"


class _Phase(enum.Enum):
    CREATED = "created"
    ENTERED = "entered"
    EXITED = "exited"


def cancelled_locally() -> Cancelled:
    """The error of a call this client cancelled."""
    return Cancelled(CANCELLED_LOCALLY, code=grpc.StatusCode.CANCELLED)


class CallHandle(AsyncResource, Generic[CallT]):
    """What every client call handle shares: status, metadata, cancellation.

    Not instantiated directly; ``StreamClient`` returns its subclasses. The type
    parameter is the grpc.aio call class the handle drives.
    """

    __slots__ = (
        "__weakref__",
        "_call",
        "_cancelled_by",
        "_generation",
        "_idle_error",
        "_phase",
        "_producers",
        "_retrier",
        "_settings",
        "_telemetry",
    )

    _pattern = "stream"  # the StreamClient method that makes this kind of handle

    def __init__(self, settings: CallSettings) -> None:
        self._settings = settings
        self._call: CallT | None = None
        self._generation = 0  # which attempt ``_call`` is (retried calls re-open it)
        self._phase = _Phase.CREATED
        self._cancelled_by: BaseException | None = None
        self._retrier = settings.retrier
        self._telemetry = settings.telemetry
        self._producers = NO_PRODUCERS
        # The attempt's call that idle_timeout ended, and the error it ended with.
        self._idle_error: tuple[CallT, RpcError] | None = None

    @property
    def _method_name(self) -> str:
        return self._settings.name

    @override
    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._method_name} {self._phase.value}>"

    # -- status and metadata -------------------------------------------------------------

    def _require_call(self) -> CallT:
        if self._call is None:
            raise UsageError(NOT_ENTERED.format(self._pattern))
        return self._call

    def done(self) -> bool:
        """True once the RPC has finished (with any status, including cancellation)."""
        return self._call is not None and self._call.done()

    async def _ready_call(self) -> CallT:
        """The call, once started; overridden where starting it may still be under way."""
        return self._require_call()

    async def initial_metadata(self) -> Metadata:
        """The server's initial metadata; waits until it arrives (or the call ends)."""
        return to_metadata(await (await self._ready_call()).initial_metadata())

    async def trailing_metadata(self) -> Metadata:
        """The server's trailing metadata; waits until the call has finished."""
        return to_metadata(await (await self._ready_call()).trailing_metadata())

    async def code(self) -> grpc.StatusCode:
        """The final status code; waits until the call has finished."""
        call = await self._ready_call()
        code = await call.code()
        if code is grpc.StatusCode.OK:
            return code
        return self._translate(code, await call.details(), None).code

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
        """The typed error for a non-OK status of this call."""
        return translate(code, details, trailing_metadata, call=self._call, tls=self._settings.tls)

    def _from_aio(self, exc: grpc.aio.AioRpcError) -> RpcError:
        return from_aio(exc, call=self._call, tls=self._settings.tls)

    def _unparseable(self) -> Internal:
        """Cancel the RPC because a response did not deserialize, and return the error."""
        error = Internal(UNPARSEABLE.format(self._method_name), code=grpc.StatusCode.INTERNAL)
        self._cancel(error)
        return error

    async def _status_error(self) -> RpcError | None:
        """The call's final status as a typed error, or None if it ended OK."""
        call = self._require_call()
        code = await call.code()
        if code is grpc.StatusCode.OK:
            return None
        return self._translate(code, await call.details(), await call.trailing_metadata())

    # -- what telemetry reads (_otel.ClientCall) -------------------------------------------

    def _responses_received(self) -> int | None:
        """Responses received so far; None for a call with one response (not a stream)."""
        return None

    def _resumed(self) -> bool:
        """True once a response arrived, so that a new attempt continues (resumes) it."""
        return False

    def _replay_size(self) -> int:
        """Bytes kept to replay on a new attempt (0 without retry, or past the buffer)."""
        return 0

    # -- cancellation ----------------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the RPC now. Idempotent; safe from any task or from a callback.

        The server sees CANCELLED. From then on every operation of this call raises
        ``Cancelled``: pending and later ``send()`` calls, reading the responses,
        ``close_and_receive()``, and leaving the ``async with`` block.

        Returns:
            True if this call cancelled the RPC, False if it had already finished.
        """
        return self._cancel(cancelled_locally())

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
        return self._phase is _Phase.ENTERED and self._retrier is not None

    def _fail_sending(self, error: BaseException) -> None:
        """Overridden by handles with a send side."""

    def _locally_cancelled_error(self) -> BaseException | None:
        """The error to raise when grpc.aio reports our own cancel() as CancelledError.

        grpc.aio raises ``asyncio.CancelledError`` from ``read()`` once the call was
        cancelled locally, which would look like the *task* being cancelled. If the task is
        not being cancelled, the cancellation was ours: report it as a typed error instead.
        """
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return None
        return self._producers.error or self._cancelled_by or cancelled_locally()

    def _raise_locally_cancelled(self) -> NoReturn:
        """In ``except CancelledError``: the typed error if the cancel was ours; else re-raise."""
        replacement = self._locally_cancelled_error()
        if replacement is None:
            raise
        raise replacement from None

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
        if self._producers is NO_PRODUCERS:
            self._producers = ProducerSet(
                f"grpcstream-producer {self._method_name}", self._producer_failed
            )
        self._producers.spawn(producer, name)

    def _producer_failed(self, error: BaseException) -> None:
        self._cancel(error)

    async def _wait_producers(self) -> None:
        await self._producers.wait()
        self._producers.raise_error()

    # -- lifecycle -------------------------------------------------------------------------

    def _check_unused(self) -> None:
        if self._phase is not _Phase.CREATED:
            raise UsageError(f"{self!r} was already used; start a new call instead")

    async def _open_first(self, opening: Awaitable[_T]) -> _T:
        """Await the first attempt's call (its token may be fetched meanwhile).

        If that fails (the token source raised, the client closed), the handle is done:
        the client stops tracking it and the error propagates from ``__aenter__``.
        """
        try:
            return await opening
        except BaseException:
            self._phase = _Phase.EXITED
            self._settings.on_exit(self)
            raise

    def _enter(self, call: CallT) -> None:
        self._check_unused()
        self._call = call
        self._phase = _Phase.ENTERED

    @override
    async def _aexit(self, exc: BaseException | None) -> None:
        """Leave the block: finish or cancel the call, then reap every task we started."""
        try:
            if exc is None:
                await self._finish()
            else:
                self._cancel(cancelled_locally())
        except BaseException:
            self._cancel(cancelled_locally())
            raise
        finally:
            self._phase = _Phase.EXITED
            try:
                await self._producers.cancel_and_wait()
                await self._release()
            finally:
                # Even when the exiting task is cancelled while reaping (SendQueue.aclose()
                # re-raises the cancellation), the client must stop counting this handle.
                self._settings.on_exit(self)

    async def _finish(self) -> None:
        """Normal exit; overridden per pattern."""

    async def _release(self) -> None:
        """Wait for helper tasks (the writer) to end; overridden by senders."""
