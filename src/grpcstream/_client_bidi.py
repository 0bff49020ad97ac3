"""BidiStream: the receive half and the send half on one call."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import grpc.aio
from typing_extensions import override

from ._client_receive import Receiver
from ._client_send import OpenCall, Sender
from ._client_settings import CallSettings
from ._exceptions import BrokenStreamError, RpcError

__all__ = ["BidiStream"]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

_Call = grpc.aio.StreamStreamCall[Any, Any]


class BidiStream(Receiver[_Call, RespT], Sender[_Call, ReqT], Generic[ReqT, RespT]):
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

    _pattern = "bidi_stream"

    def __init__(
        self,
        settings: CallSettings,
        open_call: OpenCall,
        *,
        resume: Callable[[RespT], Iterable[ReqT]] | None = None,
    ) -> None:
        super().__init__(settings)
        self._init_receiver()
        self._init_sender(open_call)
        self._resume = resume

    @override
    async def _recover(self, generation: int, error: RpcError) -> None:
        real = await self._unhide(error)
        if not isinstance(real, RpcError) or not await self._reopen(generation, real):
            self._fail_sending(real)
            raise real from error.__cause__

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

    @override
    async def _finish(self) -> None:
        if self._iterated and not self._eof:
            # Iteration was abandoned: the caller wants no more. Cancel first: a producer
            # may be blocked by backpressure that nobody reading the replies will relieve,
            # and leaving the block cancels the producers next.
            self.cancel()
            self._producers.raise_error()
            return
        await self._wait_producers()
        if self._eof:
            error = await self._status_error()
            if error is not None:
                raise await self._unhide(error)
            return
        with contextlib.suppress(BrokenStreamError):
            await self.close_send()  # the server may have ended (OK) first: read its status
        async for _ in self:
            pass  # nobody reads these: let the server finish after our half-close
