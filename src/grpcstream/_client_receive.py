"""The client's receive half: one read loop, shared by ResponseStream and BidiStream.

``Receiver.__anext__`` is the only place a client reads responses: it makes grpc.aio's
errors and local cancellation typed, applies ``idle_timeout``, hands out the entries of
batched responses one by one, and on a failure asks the handle's ``_recover()`` hook
whether a new attempt was opened (the one thing server and bidi streams do differently).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import grpc
import grpc.aio
from typing_extensions import override

from ._client_handle import CallHandle
from ._client_settings import CallSettings
from ._exceptions import IDLE_TIMEOUT, BusyStreamError, IdleTimeout, RpcError
from ._grpc_compat import EOF

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Receiver", "ResponseStream"]

RespT = TypeVar("RespT")
# A call with a response stream: grpc.aio's UnaryStreamCall or StreamStreamCall.
CallT = TypeVar("CallT", grpc.aio.UnaryStreamCall[Any, Any], grpc.aio.StreamStreamCall[Any, Any])

BUSY_READING = "another task is already iterating this stream"


class Receiver(CallHandle[CallT], Generic[CallT, RespT]):
    """The receive half of a client handle: ``async for``, ``receive()`` and ``received``.

    Subclasses implement ``_recover()``.
    """

    _eof: bool
    _iterated: bool
    _last: RespT | None
    _pending: Iterator[RespT] | None
    _reading: bool
    _received: int

    def _init_receiver(self) -> None:
        self._eof = False
        self._iterated = False
        self._reading = False
        self._received = 0
        self._last = None
        self._pending = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RespT:
        pending = self._pending
        if pending is not None:  # the rest of a batch: the hot path of coalescing, inlined
            entry = next(pending, None)
            if entry is not None:
                self._received += 1
                self._last = entry
                return entry
            self._pending = None
        unbatch = self._settings.unbatch
        while True:
            message = await self._next_message()
            if unbatch is None:
                return self._delivered(cast(RespT, message))
            # The entries of a batch go out without touching the call; the next batch is
            # read only once they are all out, so a resume always sees the last entry
            # delivered. An empty batch keeps the last entry as it was.
            pending = iter(getattr(message, unbatch.field))
            first = next(pending, None)
            if first is not None:
                self._pending = pending
                return self._delivered(first)

    def _delivered(self, response: RespT) -> RespT:
        self._received += 1
        self._last = response
        return response

    async def receive(self) -> RespT:
        """Return the next response.

        Raises:
            StopAsyncIteration: the server ended the stream with OK.
            RpcError: the server ended it with another status.
        """
        return await self.__anext__()

    @property
    def received(self) -> int:
        """How many responses (entries, with batching) have been received so far."""
        return self._received

    @override
    def _responses_received(self) -> int | None:
        return self._received

    @override
    def _resumed(self) -> bool:
        return self._last is not None

    async def _next_message(self) -> object:
        """The next wire message, across retry attempts; raises at the end of the stream."""
        if self._eof:
            raise StopAsyncIteration
        if self._reading:
            raise BusyStreamError(BUSY_READING)
        self._reading = True
        self._iterated = True
        try:
            while True:
                generation = self._generation
                try:
                    message = await self._read(self._require_call())
                    break
                except RpcError as error:
                    await self._recover(generation, error)
        finally:
            self._reading = False
        if message is EOF:
            self._eof = True
            self._producers.raise_error()
            raise StopAsyncIteration
        return message

    async def _recover(self, generation: int, error: RpcError) -> None:
        """Open a new attempt after ``error`` (return), or raise the error to the reader."""
        raise NotImplementedError

    async def _read(self, call: CallT) -> object:
        """One ``call.read()``, with grpc's errors and local cancellation made typed."""
        read: Callable[[], Awaitable[object]] = call.read
        try:
            idle = self._settings.idle_timeout
            message = await (read() if idle is None else self._read_within(call, read, idle))
        except grpc.aio.AioRpcError as exc:
            self._producers.raise_error()
            raise self._from_aio(exc) from exc
        except asyncio.CancelledError:
            self._raise_locally_cancelled()
        if message is None:
            # grpc.aio logs the deserializer's exception and hands out None, leaving the
            # stream open; a protobuf deserializer never returns None otherwise.
            raise self._unparseable()
        return message

    async def _read_within(
        self, call: CallT, read: Callable[[], Awaitable[object]], idle: float
    ) -> object:
        """``read()``, ending the call with ``IdleTimeout`` if nothing comes for ``idle`` s.

        A plain timer, not ``asyncio.timeout()``: the handle must know the call ended
        because of idleness *before* grpc.aio cancels it (its done-callbacks run during the
        cancel), so that writers and callbacks see a retryable ``IdleTimeout``, not a
        ``Cancelled``.
        """
        task = asyncio.current_task()
        assert task is not None

        def expire() -> None:
            self._idle_error = (
                call,
                IdleTimeout(IDLE_TIMEOUT.format(idle), code=grpc.StatusCode.UNAVAILABLE),
            )
            task.cancel()  # grpc.aio's read() cancels the RPC when it is interrupted

        timer = asyncio.get_running_loop().call_later(idle, expire)
        try:
            return await read()
        except asyncio.CancelledError:
            expired = self._idle_error
            if expired is not None and expired[0] is call and task.uncancel() == 0:
                raise expired[1] from None
            raise
        finally:
            timer.cancel()


class ResponseStream(Receiver[grpc.aio.UnaryStreamCall[Any, Any], RespT], Generic[RespT]):
    """A server-streaming call: ``async for`` yields typed responses until the server ends.

    Returned by ``StreamClient.server_stream()``; use it as ``async with ... as entries``.
    Iteration ends with ``StopAsyncIteration`` at the server's OK status; any other status
    raises the matching ``RpcError`` subclass. Leaving the block before the end (``break``,
    an exception, task cancellation) cancels the RPC. Only one task may iterate at a time.

    With a ``RetryPolicy``, a failure before the first response re-opens the call; with a
    ``resume`` hook too, a failure after some responses re-opens it from the last one
    received, so iteration sees every response exactly once.
    """

    _pattern = "server_stream"

    def __init__(
        self,
        settings: CallSettings,
        open_call: Callable[
            [RespT | None, float | None], Awaitable[grpc.aio.UnaryStreamCall[Any, Any]]
        ],
        *,
        resumable: bool = False,
    ) -> None:
        super().__init__(settings)
        self._init_receiver()
        self._open_call = open_call
        self._resumable = resumable
        self._received_at_reopen = 0

    @override
    async def _aenter(self) -> None:
        self._check_unused()
        opening = self._open_call(None, self._settings.first_timeout())
        self._enter(await self._open_first(opening))

    @override
    async def _recover(self, generation: int, error: RpcError) -> None:
        retrier = self._retrier
        if self._cancelled_by is not None:
            raise self._cancelled_by
        if retrier is None or (self._last is not None and not self._resumable):
            raise error  # without resume, a restart would deliver the same responses twice
        if self._received > self._received_at_reopen:
            retrier.made_progress()  # new entries arrived: backoff and attempts restart
            self._received_at_reopen = self._received
        if not await retrier.backoff(error):
            raise error
        if self._cancelled_by is not None:
            raise self._cancelled_by  # cancel() came during the backoff
        call = await self._open_call(self._last, retrier.attempt_timeout())
        self._call = call
        self._generation += 1
        if self._cancelled_by is not None:
            call.cancel()  # cancel() came while the new attempt was being opened

    @override
    async def _finish(self) -> None:
        if not self._eof:
            self.cancel()  # the caller left early: nobody will read the rest
