"""The client's send half (shared by ClientStream and BidiStream), and ClientStream.

Every message goes through a SendQueue whose single writer task owns ``call.write()``.
With a ``RetryPolicy``, what was written is kept in a bounded replay buffer; when the call
fails with a retryable status, the stream re-opens the call, replays the buffer (or, for a
bidi stream that already received responses, the messages its ``resume`` hook returns)
and carries on. Only then is a lock taken per write, so streams without retry pay nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio
from typing_extensions import override

from ._client_handle import NOT_ENTERED, NOT_FINISHED
from ._client_settings import CallSettings
from ._client_status import StatusRecovery
from ._exceptions import (
    SEND_ON_CLOSED,
    BrokenStreamError,
    RpcError,
    UsageError,
    retry_not_possible,
)
from ._grpc_compat import HIDDEN_BROKEN_STREAM, status_now
from ._message_types import wrong_type
from ._send_queue import SendQueue, SendQueueStatistics

__all__ = ["ClientStream", "Sender"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
# A call with a request stream: grpc.aio's StreamUnaryCall or StreamStreamCall.
CallT = TypeVar("CallT", grpc.aio.StreamUnaryCall[Any, Any], grpc.aio.StreamStreamCall[Any, Any])

OpenCall = Callable[[float | None], Awaitable[Any]]

_ENDED_WRITING = (asyncio.InvalidStateError, grpc.aio.UsageError)


class Sender(StatusRecovery[CallT], Generic[CallT, ReqT]):
    """The send half: ``send()``, ``send_nowait()``, ``close_send()`` and retry by replay."""

    _half_closed: bool
    _open_call: OpenCall
    _progress_generation: int
    _queue: SendQueue[ReqT] | None
    _reopen_lock: asyncio.Lock | None
    _replay: list[ReqT] | None
    _replay_bytes: int

    def _init_sender(self, open_call: OpenCall) -> None:
        self._open_call = open_call
        self._queue = None
        self._replay = [] if self._retrier is not None else None
        self._replay_bytes = 0
        self._progress_generation = 0  # the last attempt that took a new message
        self._half_closed = False
        self._reopen_lock = None
        self._init_status_recovery()

    @override
    async def _aenter(self) -> None:
        self._check_unused()
        settings = self._settings
        call = await self._open_first(self._open_call(settings.first_timeout()))
        self._enter(call)
        if self._retrier is None:
            write, done_writing = self._plain_writer(call)
        else:
            self._reopen_lock = asyncio.Lock()
            write, done_writing = self._write_retrying, self._done_writing_retrying
        self._queue = SendQueue(
            write,
            done_writing=done_writing,
            max_size=settings.max_queued,
            name=f"grpcstream-writer {settings.name}",
            packer=settings.packer,
        )
        self._telemetry.attach_queue(self._queue)
        call.add_done_callback(self._call_done)

    def _plain_writer(
        self, call: CallT
    ) -> tuple[Callable[[ReqT], Awaitable[None]], Callable[[], Awaitable[None]]]:
        async def write(message: ReqT) -> None:
            try:
                await call.write(message)
            except grpc.aio.AioRpcError as exc:
                raise await self._unhide(self._from_aio(exc)) from exc
            except _ENDED_WRITING:
                raise await self._ended_error() from None

        async def done_writing() -> None:
            try:
                await call.done_writing()
            except grpc.aio.AioRpcError as exc:
                raise self._from_aio(exc) from exc

        return write, done_writing

    # -- retry -----------------------------------------------------------------------------

    async def _write_retrying(self, message: ReqT) -> None:
        while True:
            assert self._reopen_lock is not None
            async with self._reopen_lock:
                generation = self._generation
                error = await self._try(self._require_call().write(message))
            if error is None:
                self._remember(message)
                if generation > self._progress_generation and self._replay is not None:
                    # A re-opened attempt took its replay and a new message: a later
                    # outage gets the policy's full patience again (the replay buffer
                    # still bounds how often that can happen).
                    self._progress_generation = generation
                    self._made_progress()
                return
            await self._reopen_or_raise(generation, error)

    def _made_progress(self) -> None:
        if self._retrier is not None:
            self._retrier.made_progress()

    async def _done_writing_retrying(self) -> None:
        self._half_closed = True
        while True:
            assert self._reopen_lock is not None
            async with self._reopen_lock:
                generation = self._generation
                error = await self._try(self._require_call().done_writing())
            if error is None:
                return
            await self._reopen_or_raise(generation, error)

    async def _try(self, operation: Awaitable[None]) -> BaseException | None:
        try:
            await operation
        except grpc.aio.AioRpcError as exc:
            return await self._unhide(self._from_aio(exc))
        except _ENDED_WRITING:
            return await self._ended_error()
        return None

    def _remember(self, message: ReqT) -> None:
        if self._replay is None:
            return
        limit = self._settings.replay_limit
        size = message.ByteSize() if hasattr(message, "ByteSize") else limit + 1
        self._replay_bytes += size
        if self._replay_bytes > limit:
            self._replay = None  # too much to replay: from now on a failure is final
        else:
            self._replay.append(message)

    @override
    def _replay_size(self) -> int:
        return 0 if self._replay is None else self._replay_bytes

    def _replacement_messages(self, error: RpcError) -> list[ReqT] | None:
        """What a new attempt must send first; None if this failure is not retried.

        Raises:
            RetryNotPossibleError: the status is retryable but the stream is not.
        """
        if self._replay is None:
            raise retry_not_possible(
                error,
                f"what was sent ({self._replay_bytes} bytes) exceeds the replay buffer "
                f"({self._settings.replay_limit} bytes; RetryPolicy.replay_buffer_bytes)",
            ) from error
        return list(self._replay)

    async def _reopen_or_raise(self, generation: int, error: BaseException) -> None:
        if not isinstance(error, RpcError) or not await self._reopen(generation, error):
            raise error

    async def _reopen(self, generation: int, error: RpcError) -> bool:
        """Start a new attempt after ``error``, unless another task already did.

        Returns:
            True when the caller should repeat its operation on the current call.

        Raises:
            RetryNotPossibleError: the status is retryable but the stream is not.
        """
        retrier = self._retrier
        lock = self._reopen_lock
        if self._cancelled_by is not None:
            raise self._cancelled_by
        if retrier is None or lock is None:
            return False
        async with lock:
            if generation != self._generation:
                return True
            while True:
                if not retrier.is_retryable(error):
                    return False
                messages = self._replacement_messages(error)
                if messages is None or not await retrier.backoff(error):
                    return False
                if self._cancelled_by is not None:
                    raise self._cancelled_by  # cancel() came during the backoff
                self._replay = []
                self._replay_bytes = 0
                for message in messages:
                    self._remember(message)
                call: CallT = await self._open_call(retrier.attempt_timeout())
                self._call = call
                self._generation += 1
                call.add_done_callback(self._call_done)
                if self._cancelled_by is not None:
                    call.cancel()  # cancel() came while the new attempt was being opened
                failure = await self._replay_on(call, messages)
                if failure is None:
                    return True
                if not isinstance(failure, RpcError):
                    raise failure
                error = failure

    async def _replay_on(self, call: CallT, messages: list[ReqT]) -> BaseException | None:
        for message in messages:
            failure = await self._try(call.write(message))
            if failure is not None:
                return failure
        if self._half_closed:
            return await self._try(call.done_writing())
        return None

    # -- status ----------------------------------------------------------------------------

    async def _ended_error(self) -> BaseException:
        if self._cancelled_by is not None:
            return self._send_error()
        expired = self._idle_error
        if expired is not None and expired[0] is self._call:
            return expired[1]
        error = await self._status_error()
        return await self._unhide(error) if error is not None else BrokenStreamError(SEND_ON_CLOSED)

    def _call_done(self, call: CallT) -> None:
        # The RPC ended (status received, deadline, cancel): nothing more can be sent, so
        # waiting and later senders must learn it now rather than on their next write.
        # grpc.aio runs this again when the real status replaces its hidden INTERNAL one.
        self._status_changed(call)
        queue, current = self._queue, self._call
        if queue is None or current is None or call is not current:
            return
        expired = self._idle_error
        if expired is not None and expired[0] is call:
            return  # the reader ended it for idleness and decides about the retry
        if self._cancelled_by is not None:
            queue.fail(self._send_error())
            return
        # Without this, the next write or read would meet the status instead.
        status = status_now(current)
        if status is None:
            return
        grpc_code, details, trailing_metadata = status
        if grpc_code is grpc.StatusCode.OK:
            if queue.closed and queue.error is None and not queue.statistics().queued:
                return  # everything was written and the half-close is on its way: a success
            # The server ended the call (OK) while we were still sending: not a misuse.
            queue.fail(BrokenStreamError(SEND_ON_CLOSED))
            return
        error = self._translate(grpc_code, details, trailing_metadata)
        if error.details == HIDDEN_BROKEN_STREAM:
            return  # a write failed: the real status follows (see _unhide)
        if self._retrier is not None and self._retrier.is_retryable(error):
            return  # the writer or reader that meets it next decides whether to retry
        queue.fail(error)

    @override
    def _fail_sending(self, error: BaseException) -> None:
        if self._queue is not None:
            self._queue.fail(error)

    def _require_queue(self) -> SendQueue[ReqT]:
        if self._queue is None:
            raise UsageError(NOT_ENTERED.format(self._pattern))
        return self._queue

    # -- the send API ----------------------------------------------------------------------

    async def send(self, message: ReqT) -> None:
        """Queue ``message`` for sending, waiting while the send queue is full.

        Safe from any number of tasks at once: one writer task performs every write, and
        each task's messages keep their order. Returns once the message is queued, not
        when it is on the wire; ``close_send()`` waits for that.

        Raises:
            StreamClosedError: after ``close_send()`` (a bug in the caller); nothing was
                sent.
            Cancelled: after this call's own ``cancel()`` (or the end of its block).
            BrokenStreamError: the server ended the call with OK while this side was
                still sending; nothing more can be sent.
            RpcError: the call failed (the typed status, e.g. ``DeadlineExceeded``); also
                raised to tasks that were waiting for room.
            RetryNotPossibleError: the call failed and its retry policy could not replay it.
            UsageError: used outside the stream's ``async with`` block.
            TypeError: ``message`` is not the method's request class; nothing was sent.

        Cancellation: atomic. If the waiting task is cancelled the message was not queued.
        """
        expected = self._settings.send_type
        if expected is not None and type(message) is not expected:
            self._wrong_type(message, expected)
        await self._require_queue().send(message)

    def send_nowait(self, message: ReqT) -> None:
        """Queue ``message`` if there is room, without waiting.

        Raises:
            WouldBlock: the send queue is full; use ``await send()`` to wait for room.
            StreamClosedError: after ``close_send()``.
            Cancelled: after this call's own ``cancel()``.
            BrokenStreamError: the server ended the call with OK meanwhile.
            RpcError: the call failed.
            TypeError: ``message`` is not the method's request class; nothing was sent.
        """
        expected = self._settings.send_type
        if expected is not None and type(message) is not expected:
            self._wrong_type(message, expected)
        self._require_queue().send_nowait(message)

    def _wrong_type(self, message: object, expected: type) -> None:
        if not isinstance(message, expected):
            wrong_type(message, expected, self._method_name)

    async def close_send(self) -> None:
        """Half-close: no more messages; returns once every queued message is written.

        Idempotent (later and concurrent calls wait for the same completion). After it,
        ``send()`` raises ``StreamClosedError``. The server's reader then sees the end of
        the request stream.

        Raises:
            RpcError: the call failed before everything queued was written; ``Cancelled``
                after this call's own ``cancel()``.
            BrokenStreamError: the server ended the call with OK before everything
                queued was written.

        Cancellation: cancelling the waiting task does not undo the half-close.
        """
        self._telemetry.half_closed()
        await self._require_queue().close()

    def statistics(self) -> SendQueueStatistics:
        """A snapshot of the send queue: queued, sent, max size and waiting senders."""
        return self._require_queue().statistics()

    @override
    async def _release(self) -> None:
        if self._queue is not None:
            await self._queue.aclose()


class ClientStream(Sender[grpc.aio.StreamUnaryCall[Any, Any], ReqT], Generic[ReqT, RespT]):
    """A client-streaming call: ``send()`` many requests, then one response.

    Returned by ``StreamClient.client_stream()``; use it as ``async with ... as upload``.
    ``close_and_receive()`` half-closes and returns the response. Leaving the block
    normally does the same if it was not called (the response is then available from
    ``response()``); leaving it with an exception cancels the RPC.

    With a ``RetryPolicy``, a retryable failure before the response re-opens the call and
    replays everything sent, as long as it fits ``RetryPolicy.replay_buffer_bytes``.
    """

    _pattern = "client_stream"

    def __init__(self, settings: CallSettings, open_call: OpenCall) -> None:
        super().__init__(settings)
        self._init_sender(open_call)
        self._response: RespT | None = None
        self._response_error: BaseException | None = None
        self._received_status = False

    async def close_and_receive(self) -> RespT:
        """Half-close and return the response.

        First waits for producers started with ``spawn()`` to finish, then half-closes
        once every queued message is written, then waits for the server's response.
        Idempotent: a second call returns the same response (or raises the same error).
        Once it has raised the call's status, leaving the block does not raise it again.

        Raises:
            RpcError: the server ended the call with a non-OK status (typed subclass);
                ``DeadlineExceeded`` when the call's timeout expires meanwhile;
                ``Internal`` if the response could not be deserialized; ``Cancelled``
                after this call's own ``cancel()``.
            RetryNotPossibleError: the call failed with a retryable status but what was
                sent no longer fits the replay buffer.
            Exception: whatever a spawned producer raised.

        Cancellation: cancelling the waiting task cancels the RPC when the block exits.
        """
        if self._response is not None:
            return self._response
        if self._response_error is not None:
            raise self._response_error
        try:
            response = await self._receive()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._response_error = exc
            self._received_status = True
            raise
        self._received_status = True
        self._response = response
        return response

    async def _receive(self) -> RespT:
        queue = self._require_queue()
        await self._wait_producers()
        self._telemetry.half_closed()
        with contextlib.suppress(RpcError, BrokenStreamError):
            # The status below says it better (and covers "ended OK early").
            await queue.close()
        while True:
            generation = self._generation
            try:
                response: RespT | None = await self._require_call()
            except grpc.aio.AioRpcError as exc:
                self._producers.raise_error()
                error = await self._unhide(self._from_aio(exc))
                if isinstance(error, RpcError) and await self._reopen(generation, error):
                    continue
                raise error from exc
            except asyncio.CancelledError:
                self._raise_locally_cancelled()
            if response is None:
                raise self._unparseable()  # grpc.aio logged the deserializer's error
            return response

    def response(self) -> RespT:
        """The response, once ``close_and_receive()`` (or leaving the block) received it.

        Raises:
            UsageError: the response has not been received.
        """
        if self._response is None:
            raise UsageError(NOT_FINISHED)
        return self._response

    @override
    async def _finish(self) -> None:
        if self._received_status:
            return  # close_and_receive() already returned the response or raised the error
        await self.close_and_receive()
