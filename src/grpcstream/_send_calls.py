"""Client-side handles with a send side: ClientStream and BidiStream.

Every message goes through a SendQueue whose single writer task owns ``call.write()``.
With a ``RetryPolicy``, what was written is kept in a bounded replay buffer; when the call
fails with a retryable status, the stream re-opens the call, replays the buffer (or, for a
bidi stream that already received responses, the messages its ``resume`` hook returns)
and carries on. Only then is a lock taken per write, so streams without retry pay nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import grpc.aio
from typing_extensions import override

from ._call_status import StatusRecovery, core_status
from ._calls import (
    HIDDEN_BROKEN_STREAM,
    NOT_ENTERED,
    NOT_FINISHED,
    CallHandle,
    _pattern_name,
    _read,
)
from ._exceptions import (
    SEND_ON_CLOSED,
    BrokenStreamError,
    BusyStreamError,
    RpcError,
    UsageError,
    retry_not_possible,
)
from ._message_types import wrong_type
from ._retry import Retrier
from ._send_queue import SendQueue, SendQueueStatistics

if TYPE_CHECKING:
    from typing import Self

    from ._batching import Packer

__all__ = ["BidiStream", "ClientStream"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")


OpenCall = Callable[[float | None], Awaitable[Any]]


class _Sender(StatusRecovery, Generic[ReqT]):
    """The send half shared by ClientStream and BidiStream."""

    __slots__ = (
        "_generation",
        "_half_closed",
        "_max_queued",
        "_open_call",
        "_packer",
        "_progress_generation",
        "_queue",
        "_reopen_lock",
        "_replay",
        "_replay_bytes",
        "_replay_limit",
        "_retrier",
        "_send_type",
        "_timeout",
    )

    def __init__(
        self,
        method_name: str,
        open_call: OpenCall,
        on_exit: Callable[[CallHandle], None],
        max_queued: int,
        *,
        retrier: Retrier | None = None,
        replay_limit: int = 0,
        timeout: float | None = None,
        send_type: type | None = None,
    ) -> None:
        super().__init__(method_name, on_exit)
        self._send_type = send_type
        self._open_call = open_call
        self._max_queued = max_queued
        self._queue: SendQueue[ReqT] | None = None
        self._retrier = retrier
        self._timeout = timeout
        self._replay: list[ReqT] | None = [] if retrier is not None else None
        self._replay_bytes = 0
        self._replay_limit = replay_limit
        self._generation = 0
        self._progress_generation = 0  # the last attempt that took a new message
        self._half_closed = False
        self._reopen_lock: asyncio.Lock | None = None
        self._init_status_recovery()
        self._packer: Packer[object, ReqT] | None = None  # set by StreamClient for batching=

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc)

    async def _start(self) -> None:
        self._check_unused()
        timeout = self._retrier.attempt_timeout() if self._retrier else self._timeout
        call = await self._open_first(self._open_call(timeout))
        self._enter(call)
        if self._retrier is None:
            write, done_writing = self._plain_writer(call)
        else:
            self._reopen_lock = asyncio.Lock()
            write, done_writing = self._write_retrying, self._done_writing_retrying
        self._queue = SendQueue(
            write,
            done_writing=done_writing,
            max_size=self._max_queued,
            name=f"grpcstream-writer {self._method_name}",
            packer=self._packer,
        )
        call.add_done_callback(self._call_done)

    def _plain_writer(self, call: Any) -> tuple[Callable[[ReqT], Any], Callable[[], Any]]:
        async def write(message: ReqT) -> None:
            try:
                await call.write(message)
            except grpc.aio.AioRpcError as exc:
                raise await self._unhide(self._from_aio(exc)) from exc
            except (asyncio.InvalidStateError, grpc.aio.UsageError):
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
                error = await self._try(self._current().write(message))
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
                error = await self._try(self._current().done_writing())
            if error is None:
                return
            await self._reopen_or_raise(generation, error)

    def _current(self) -> Any:
        """The call of the current attempt (a stream-request call: it has write())."""
        return self._require_call()

    async def _try(self, operation: Any) -> BaseException | None:
        try:
            await operation
        except grpc.aio.AioRpcError as exc:
            return await self._unhide(self._from_aio(exc))
        except (asyncio.InvalidStateError, grpc.aio.UsageError):
            return await self._ended_error()
        return None

    def _remember(self, message: ReqT) -> None:
        if self._replay is None:
            return
        size = message.ByteSize() if hasattr(message, "ByteSize") else self._replay_limit + 1
        self._replay_bytes += size
        if self._replay_bytes > self._replay_limit:
            self._replay = None  # too much to replay: from now on a failure is final
        else:
            self._replay.append(message)

    def _replacement_messages(self, error: RpcError) -> list[ReqT] | None:
        """What a new attempt must send first; None if this failure is not retried.

        Raises:
            RetryNotPossibleError: the status is retryable but the stream is not.
        """
        if self._replay is None:
            raise retry_not_possible(
                error,
                f"what was sent ({self._replay_bytes} bytes) exceeds the replay buffer "
                f"({self._replay_limit} bytes; RetryPolicy.replay_buffer_bytes)",
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
                call = await self._open_call(retrier.attempt_timeout())
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

    async def _replay_on(self, call: Any, messages: list[ReqT]) -> BaseException | None:
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

    def _call_done(self, call: Any) -> None:
        # The RPC ended (status received, deadline, cancel): nothing more can be sent, so
        # waiting and later senders must learn it now rather than on their next write.
        # grpc.aio runs this again when the real status replaces its hidden INTERNAL one.
        self._status_changed(call)
        queue = self._queue
        if queue is None or call is not self._call:
            return
        expired = self._idle_error
        if expired is not None and expired[0] is call:
            return  # the reader ended it for idleness and decides about the retry
        if self._cancelled_by is not None:
            queue.fail(self._send_error())
            return
        # Without this, the next write or read would meet the status instead.
        status = core_status(call)
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
            raise UsageError(NOT_ENTERED.format(_pattern_name(self)))
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
        expected = self._send_type
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
        expected = self._send_type
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
        await self._require_queue().close()

    def statistics(self) -> SendQueueStatistics:
        """A snapshot of the send queue: queued, sent, max size and waiting senders."""
        return self._require_queue().statistics()

    @override
    async def _release(self) -> None:
        if self._queue is not None:
            await self._queue.aclose()


class ClientStream(_Sender[ReqT], Generic[ReqT, RespT]):
    """A client-streaming call: ``send()`` many requests, then one response.

    Returned by ``StreamClient.client_stream()``; use it as ``async with ... as upload``.
    ``close_and_receive()`` half-closes and returns the response. Leaving the block
    normally does the same if it was not called (the response is then available from
    ``response()``); leaving it with an exception cancels the RPC.

    With a ``RetryPolicy``, a retryable failure before the response re-opens the call and
    replays everything sent, as long as it fits ``RetryPolicy.replay_buffer_bytes``.
    """

    __slots__ = ("_received_status", "_response", "_response_error")
    _pattern = "client_stream"

    def __init__(
        self,
        method_name: str,
        open_call: Callable[[float | None], Awaitable[grpc.aio.StreamUnaryCall[ReqT, RespT]]],
        on_exit: Callable[[CallHandle], None],
        max_queued: int,
        *,
        retrier: Retrier | None = None,
        replay_limit: int = 0,
        timeout: float | None = None,
        send_type: type | None = None,
    ) -> None:
        super().__init__(
            method_name,
            open_call,
            on_exit,
            max_queued,
            retrier=retrier,
            replay_limit=replay_limit,
            timeout=timeout,
            send_type=send_type,
        )
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
        with contextlib.suppress(RpcError, BrokenStreamError):
            # The status below says it better (and covers "ended OK early").
            await queue.close()
        while True:
            generation = self._generation
            call: grpc.aio.StreamUnaryCall[ReqT, RespT] = self._require_call()  # type: ignore[assignment]
            try:
                response = await call
            except grpc.aio.AioRpcError as exc:
                self._raise_producer_error()
                error = await self._unhide(self._from_aio(exc))
                if isinstance(error, RpcError) and await self._reopen(generation, error):
                    continue
                raise error from exc
            except asyncio.CancelledError:
                replacement = self._locally_cancelled_error()
                if replacement is None:
                    raise
                raise replacement from None
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


class BidiStream(_Sender[ReqT], Generic[ReqT, RespT]):
    """A bidirectional call: ``send()`` and ``async for`` run independently.

    Returned by ``StreamClient.bidi_stream()``; use it as ``async with ... as follow``.
    Sends are safe from many tasks; one task at a time may iterate. Leaving the block
    normally half-closes (after the queued messages are written) and then:

    * if the responses were read to the end, nothing more is needed;
    * if iteration was started and abandoned (``break``), the RPC is cancelled;
    * if the responses were never read, it waits for the server to finish (so a server
      that answers only after the half-close completes normally); the call's deadline
      bounds that wait.

    Leaving with an exception cancels the RPC.

    With a ``RetryPolicy``, a retryable failure before any response re-opens the call and
    replays what was sent. After responses arrived it is retried only with ``resume``:
    ``resume(last_response)`` returns the messages that re-open the conversation.
    """

    __slots__ = (
        "_eof",
        "_iterated",
        "_last",
        "_reading",
        "_received",
        "_resume",
    )
    _pattern = "bidi_stream"

    def __init__(
        self,
        method_name: str,
        open_call: Callable[[float | None], Awaitable[grpc.aio.StreamStreamCall[ReqT, RespT]]],
        on_exit: Callable[[CallHandle], None],
        max_queued: int,
        *,
        retrier: Retrier | None = None,
        replay_limit: int = 0,
        timeout: float | None = None,
        resume: Callable[[RespT], Iterable[ReqT]] | None = None,
        send_type: type | None = None,
    ) -> None:
        super().__init__(
            method_name,
            open_call,
            on_exit,
            max_queued,
            retrier=retrier,
            replay_limit=replay_limit,
            timeout=timeout,
            send_type=send_type,
        )
        self._resume = resume
        self._eof = False
        self._reading = False
        self._iterated = False
        self._received = 0
        self._last: RespT | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RespT:
        if self._eof:
            raise StopAsyncIteration
        if self._reading:
            raise BusyStreamError("another task is already iterating this stream")
        self._reading = True
        self._iterated = True
        try:
            while True:
                generation = self._generation
                try:
                    message = await _read(self, self._require_call())
                    break
                except RpcError as hidden:
                    error = await self._unhide(hidden)
                    if not isinstance(error, RpcError) or not await self._reopen(generation, error):
                        self._fail_sending(error)
                        raise error from hidden.__cause__
        finally:
            self._reading = False
        if message is grpc.aio.EOF:
            self._eof = True
            self._raise_producer_error()
            raise StopAsyncIteration
        self._received += 1
        self._last = message  # type: ignore[assignment]
        return message  # type: ignore[return-value]

    @override
    def _made_progress(self) -> None:
        if self._last is None:  # after responses, resume() drives retries: keep the count
            super()._made_progress()

    @override
    def _replacement_messages(self, error: RpcError) -> list[ReqT] | None:
        if self._last is None:
            return super()._replacement_messages(error)
        if self._resume is None:
            return None  # responses arrived: only resume knows how to continue
        # Attempts are not reset by progress here, unlike a resumed server stream: the
        # replies to resume's own messages would count as progress, and a server that
        # answers them and fails again would be retried for ever.
        return list(self._resume(self._last))

    async def receive(self) -> RespT:
        """Return the next response.

        Raises:
            StopAsyncIteration: the server ended the stream with OK.
            RpcError: the server ended it with another status.
        """
        return await self.__anext__()

    @property
    def received(self) -> int:
        """How many responses have been received so far."""
        return self._received

    @override
    async def _finish(self) -> None:
        if self._iterated and not self._eof:
            # Iteration was abandoned: the caller wants no more. Cancel first: a producer
            # may be blocked by backpressure that nobody reading the replies will relieve,
            # and _close() cancels the producers next.
            self.cancel()
            self._raise_producer_error()
            return
        await self._wait_producers()
        if self._eof:
            await self._raise_status_error()
            return
        with contextlib.suppress(BrokenStreamError):
            await self.close_send()  # the server may have ended (OK) first: read its status
        async for _ in self:
            pass  # nobody reads these: let the server finish after our half-close

    async def _raise_status_error(self) -> None:
        error = await self._status_error()
        if error is not None:
            raise await self._unhide(error)
