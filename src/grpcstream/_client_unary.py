"""UnaryCall: a request-response call in flight, awaitable for its response."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

import grpc.aio
from typing_extensions import override

from ._client_handle import CallHandle, _Phase
from ._client_settings import CallSettings
from ._exceptions import UsageError

__all__ = ["UnaryCall"]

RespT = TypeVar("RespT")
_T = TypeVar("_T")


class UnaryCall(CallHandle[grpc.aio.UnaryUnaryCall[Any, RespT]], Generic[RespT]):
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
        self, settings: CallSettings, call: grpc.aio.UnaryUnaryCall[Any, RespT] | None = None
    ) -> None:
        super().__init__(settings)
        self._opening: asyncio.Task[None] | None = None
        if call is not None:
            self._started(call)

    def _started(self, call: grpc.aio.UnaryUnaryCall[Any, RespT]) -> None:
        self._enter(call)
        on_exit = self._settings.on_exit
        call.add_done_callback(lambda _: on_exit(self))

    @classmethod
    def opening(
        cls,
        settings: CallSettings,
        pending: asyncio.Future[_T],
        start: Callable[[_T], grpc.aio.UnaryUnaryCall[Any, RespT]],
    ) -> UnaryCall[RespT]:
        """A handle whose call is ``start(result)`` once ``pending`` (a token) is ready.

        A task starts the call as soon as ``pending`` is done; awaiting the handle waits
        for that and raises what ``pending`` or ``start`` raised. ``cancel()`` meanwhile
        cancels ``pending`` and the call never starts.
        """
        self = cls(settings)

        async def open_call() -> None:
            self._started(start(await pending))

        opening = asyncio.get_running_loop().create_task(
            open_call(), name=f"grpcstream-open {settings.name}"
        )
        self._opening = opening

        def opened(task: asyncio.Task[None]) -> None:
            pending.cancel()  # no-op once it is done; stops it if the task never ran
            if task.cancelled() or task.exception() is not None:  # retrieved: awaiters re-raise
                self._phase = _Phase.EXITED
                settings.on_exit(self)

        opening.add_done_callback(opened)
        return self

    @override
    async def _ready_call(self) -> grpc.aio.UnaryUnaryCall[Any, RespT]:
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
            response = await (await self._ready_call())
        except grpc.aio.AioRpcError as exc:
            raise self._from_aio(exc) from exc
        except asyncio.CancelledError:
            self._raise_locally_cancelled()
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
