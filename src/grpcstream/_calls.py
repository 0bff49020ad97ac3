"""Client-side call handles: ResponseStream, ClientStream and BidiStream.

Each handle is an async context manager around one grpc.aio call. Entering it starts the
RPC; leaving it guarantees the call is finished (drained after a half-close, or cancelled)
and that no task grpcstream started for it is still running. Every grpc error crosses into
grpcstream's typed hierarchy here or in ``_exceptions``; nothing raw leaks out.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import grpc.aio

from ._exceptions import (
    SEND_ON_CLOSED,
    BusyStreamError,
    Cancelled,
    DeadlineExceeded,
    Internal,
    Metadata,
    RpcError,
    StreamClosedError,
    UsageError,
    rpc_error,
)
from ._send_queue import SendQueue, SendQueueStatistics

if TYPE_CHECKING:
    from typing import Self

__all__ = ["BidiStream", "CallHandle", "ClientStream", "ResponseStream", "UnaryCall"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

CANCELLED_LOCALLY = "the call was cancelled by the client"
NOT_ENTERED = "use the stream as an async context manager: `async with client.{}(...) as s`"
NOT_FINISHED = "the call has not finished yet; read this after the stream has ended"
UNPARSEABLE = "a response from the server could not be deserialized: {}"
HIDDEN_DEADLINE = "Deadline Exceeded (grpc reported it as INTERNAL while a write was pending)"

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
        "_method_name",
        "_on_exit",
        "_phase",
        "_producer_error",
        "_producers",
    )

    def __init__(self, method_name: str, on_exit: Callable[[CallHandle], None]) -> None:
        self._call: _AnyCall | None = None
        self._phase = _Phase.CREATED
        self._method_name = method_name
        self._on_exit = on_exit
        self._cancelled_by: BaseException | None = None
        self._producers: set[asyncio.Task[None]] = set()
        self._producer_error: BaseException | None = None

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

    async def initial_metadata(self) -> Metadata:
        """The server's initial metadata; waits until it arrives (or the call ends)."""
        return _pairs(await self._require_call().initial_metadata())

    async def trailing_metadata(self) -> Metadata:
        """The server's trailing metadata; waits until the call has finished."""
        return _pairs(await self._require_call().trailing_metadata())

    async def code(self) -> grpc.StatusCode:
        """The final status code; waits until the call has finished."""
        call = self._require_call()
        code = await call.code()
        details = await call.details()
        return self._translate(code, details, None).code if code is not grpc.StatusCode.OK else code

    async def details(self) -> str:
        """The final status message; waits until the call has finished."""
        call = self._require_call()
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

        The server sees CANCELLED; pending and later ``send()`` calls raise
        ``StreamClosedError``, and a task iterating the responses gets ``Cancelled``.

        Returns:
            True if this call cancelled the RPC, False if it had already finished.
        """
        return self._cancel(Cancelled(CANCELLED_LOCALLY, code=grpc.StatusCode.CANCELLED))

    def _cancel(self, reason: BaseException) -> bool:
        call = self._call
        if call is None or call.done():
            return False
        if self._cancelled_by is None:
            self._cancelled_by = reason
        self._fail_sending(StreamClosedError(CANCELLED_LOCALLY))
        return call.cancel()

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

    def _enter(self, call: _AnyCall) -> None:
        if self._phase is not _Phase.CREATED:
            raise UsageError(f"{self!r} was already used; start a new call instead")
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
            await self._cancel_producers()
            await self._release()
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

    __slots__ = ()

    def __init__(
        self,
        method_name: str,
        call: grpc.aio.UnaryUnaryCall[Any, RespT],
        on_exit: Callable[[CallHandle], None],
    ) -> None:
        super().__init__(method_name, on_exit)
        self._enter(call)
        call.add_done_callback(lambda _: on_exit(self))

    def __await__(self) -> Generator[Any, None, RespT]:
        return self._response().__await__()

    async def _response(self) -> RespT:
        call: grpc.aio.UnaryUnaryCall[Any, RespT] = self._require_call()  # type: ignore[assignment]
        try:
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
    """

    __slots__ = ("_eof", "_open_call", "_reading", "_received")

    def __init__(
        self,
        method_name: str,
        open_call: Callable[[], grpc.aio.UnaryStreamCall[Any, RespT]],
        on_exit: Callable[[CallHandle], None],
    ) -> None:
        super().__init__(method_name, on_exit)
        self._open_call = open_call
        self._eof = False
        self._reading = False
        self._received = 0

    async def __aenter__(self) -> Self:
        self._enter(self._open_call())
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
        call = self._require_call()
        self._reading = True
        try:
            message = await _read(self, call)
        finally:
            self._reading = False
        if message is grpc.aio.EOF:
            self._eof = True
            raise StopAsyncIteration
        self._received += 1
        return message  # type: ignore[return-value]

    @property
    def received(self) -> int:
        """How many responses have been received so far."""
        return self._received

    async def _finish(self) -> None:
        if not self._eof:
            self.cancel()  # the caller left early: nobody will read the rest


async def _read(handle: CallHandle, call: Any) -> object:
    """One ``call.read()``, with grpc's errors and local cancellation made typed."""
    try:
        message = await call.read()
    except grpc.aio.AioRpcError as exc:
        error = handle._from_aio(exc)
        handle._fail_sending(error)
        handle._raise_producer_error()
        raise error from exc
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


class _Sender(CallHandle, Generic[ReqT]):
    """The send half shared by ClientStream and BidiStream."""

    __slots__ = ("_max_queued", "_queue")

    def __init__(
        self, method_name: str, on_exit: Callable[[CallHandle], None], max_queued: int
    ) -> None:
        super().__init__(method_name, on_exit)
        self._max_queued = max_queued
        self._queue: SendQueue[ReqT] | None = None

    def _start_sending(self, call: grpc.aio.StreamUnaryCall[ReqT, Any] | Any) -> None:
        async def write(message: ReqT) -> None:
            try:
                await call.write(message)
            except grpc.aio.AioRpcError as exc:
                raise self._from_aio(exc) from exc
            except (asyncio.InvalidStateError, grpc.aio.UsageError):
                raise await self._ended_error() from None

        async def done_writing() -> None:
            try:
                await call.done_writing()
            except grpc.aio.AioRpcError as exc:
                raise self._from_aio(exc) from exc

        self._queue = SendQueue(
            write,
            done_writing=done_writing,
            max_size=self._max_queued,
            name=f"grpcstream-writer {self._method_name}",
        )
        call.add_done_callback(self._call_done)

    async def _ended_error(self) -> BaseException:
        if self._cancelled_by is not None:
            return StreamClosedError(CANCELLED_LOCALLY)
        error = await self._status_error()
        return error if error is not None else StreamClosedError(SEND_ON_CLOSED)

    def _call_done(self, call: Any) -> None:
        # The RPC ended (status received, deadline, cancel): nothing more can be sent, so
        # waiting and later senders must learn it now rather than on their next write.
        queue = self._queue
        if queue is None:
            return
        if self._cancelled_by is not None:
            queue.fail(StreamClosedError(CANCELLED_LOCALLY))
            return
        status = getattr(getattr(call, "_cython_call", None), "_status", None)
        code = getattr(status, "code", None)
        if status is None or code is None:
            queue.fail(StreamClosedError(SEND_ON_CLOSED))
            return
        grpc_code = _STATUS_FROM_CORE.get(code())
        if grpc_code is None or grpc_code is grpc.StatusCode.OK:
            queue.fail(StreamClosedError(SEND_ON_CLOSED))
        else:
            queue.fail(self._translate(grpc_code, status.details(), status.trailing_metadata()))

    def _fail_sending(self, error: BaseException) -> None:
        if self._queue is not None:
            self._queue.fail(error)

    def _require_queue(self) -> SendQueue[ReqT]:
        if self._queue is None:
            raise UsageError(NOT_ENTERED.format(_pattern_name(self)))
        return self._queue

    async def send(self, message: ReqT) -> None:
        """Queue ``message`` for sending, waiting while the send queue is full.

        Safe from any number of tasks at once: one writer task performs every write, and
        each task's messages keep their order. Returns once the message is queued, not
        when it is on the wire; ``close_send()`` waits for that.

        Raises:
            StreamClosedError: after ``close_send()``, or once the call has ended OK or
                was cancelled; nothing was sent.
            RpcError: the call failed (the typed status, e.g. ``DeadlineExceeded``); also
                raised to tasks that were waiting for room.
            UsageError: used outside the stream's ``async with`` block.

        Cancellation: atomic. If the waiting task is cancelled the message was not queued.
        """
        await self._require_queue().send(message)

    def send_nowait(self, message: ReqT) -> None:
        """Queue ``message`` if there is room, without waiting.

        Raises:
            WouldBlock: the send queue is full; use ``await send()`` to wait for room.
            StreamClosedError: after ``close_send()`` or once the call has ended.
            RpcError: the call failed.
        """
        self._require_queue().send_nowait(message)

    async def close_send(self) -> None:
        """Half-close: no more messages; returns once every queued message is written.

        Idempotent (later and concurrent calls wait for the same completion). After it,
        ``send()`` raises ``StreamClosedError``. The server's reader then sees the end of
        the request stream.

        Raises:
            RpcError: the call failed before everything queued was written.
            StreamClosedError: the call was cancelled.

        Cancellation: cancelling the waiting task does not undo the half-close.
        """
        await self._require_queue().close()

    def statistics(self) -> SendQueueStatistics:
        """A snapshot of the send queue: queued, sent, max size and waiting senders."""
        return self._require_queue().statistics()

    async def _release(self) -> None:
        if self._queue is not None:
            await self._queue.aclose()


class ClientStream(_Sender[ReqT], Generic[ReqT, RespT]):
    """A client-streaming call: ``send()`` many requests, then one response.

    Returned by ``StreamClient.client_stream()``; use it as ``async with ... as upload``.
    ``close_and_receive()`` half-closes and returns the response. Leaving the block
    normally does the same if it was not called (the response is then available from
    ``response()``); leaving it with an exception cancels the RPC.
    """

    __slots__ = ("_open_call", "_received_status", "_response", "_response_error")

    def __init__(
        self,
        method_name: str,
        open_call: Callable[[], grpc.aio.StreamUnaryCall[ReqT, RespT]],
        on_exit: Callable[[CallHandle], None],
        max_queued: int,
    ) -> None:
        super().__init__(method_name, on_exit, max_queued)
        self._open_call = open_call
        self._response: RespT | None = None
        self._response_error: BaseException | None = None
        self._received_status = False

    async def __aenter__(self) -> Self:
        call = self._open_call()
        self._enter(call)
        self._start_sending(call)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc)

    async def close_and_receive(self) -> RespT:
        """Half-close and return the response.

        First waits for producers started with ``spawn()`` to finish, then half-closes
        once every queued message is written, then waits for the server's response.
        Idempotent: a second call returns the same response (or raises the same error).
        Once it has raised the call's status, leaving the block does not raise it again.

        Raises:
            RpcError: the server ended the call with a non-OK status (typed subclass);
                ``DeadlineExceeded`` when the call's timeout expires meanwhile;
                ``Internal`` if the response could not be deserialized.
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
        call: grpc.aio.StreamUnaryCall[ReqT, RespT] = self._require_call()  # type: ignore[assignment]
        await self._wait_producers()
        try:
            await queue.close()
        except RpcError:
            pass  # the status below says it better (and covers "ended OK early")
        except StreamClosedError:
            self._raise_producer_error()
            raise
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            self._raise_producer_error()
            raise self._from_aio(exc) from exc
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
    """

    __slots__ = ("_eof", "_iterated", "_open_call", "_reading", "_received")

    def __init__(
        self,
        method_name: str,
        open_call: Callable[[], grpc.aio.StreamStreamCall[ReqT, RespT]],
        on_exit: Callable[[CallHandle], None],
        max_queued: int,
    ) -> None:
        super().__init__(method_name, on_exit, max_queued)
        self._open_call = open_call
        self._eof = False
        self._reading = False
        self._iterated = False
        self._received = 0

    async def __aenter__(self) -> Self:
        call = self._open_call()
        self._enter(call)
        self._start_sending(call)
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
        call = self._require_call()
        self._reading = True
        self._iterated = True
        try:
            message = await _read(self, call)
        finally:
            self._reading = False
        if message is grpc.aio.EOF:
            self._eof = True
            self._raise_producer_error()
            raise StopAsyncIteration
        self._received += 1
        return message  # type: ignore[return-value]

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

    async def _finish(self) -> None:
        await self._wait_producers()
        if self._eof:
            await self._raise_status_error()
            return
        if self._iterated:
            self.cancel()  # iteration was abandoned: the caller wants no more
            return
        await self.close_send()
        async for _ in self:
            pass  # nobody reads these: let the server finish after our half-close

    async def _raise_status_error(self) -> None:
        error = await self._status_error()
        if error is not None:
            raise error


def _pairs(metadata: object) -> Metadata:
    if metadata is None:
        return ()
    return tuple((str(key), value) for key, value in metadata)  # type: ignore[attr-defined]


def _pattern_name(handle: CallHandle) -> str:
    return {
        UnaryCall: "unary_call",
        ResponseStream: "server_stream",
        ClientStream: "client_stream",
        BidiStream: "bidi_stream",
    }.get(type(handle), "stream")


_STATUS_FROM_CORE: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}
