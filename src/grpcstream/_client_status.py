"""What a client call's status really is, where grpc.aio hides it.

grpc.aio replaces a call's status with ``INTERNAL: Internal error from Core`` when a write
fails in the C-core because the call or its connection ended. The real status is not lost:
it reaches the cython call just before the failed write (grpc.aio then overwrites it) or
just after (it overwrites grpc.aio's). ``StatusRecovery`` keeps the first real status
each attempt reports and waits, within a bound, for one that has not arrived yet. Calls
that a stream ended itself because they went quiet (``idle_timeout``) report the
``IdleTimeout`` they ended with rather than the CANCELLED that grpc records.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

import grpc
import grpc.aio

from ._client_handle import CallHandle
from ._exceptions import SEND_ON_CLOSED, BrokenStreamError, RpcError
from ._grpc_compat import HIDDEN_BROKEN_STREAM, is_hidden_internal, status_now

__all__ = ["StatusRecovery"]

CallT = TypeVar("CallT", bound=grpc.aio.Call)
# How long a failed write waits for the real status to replace grpc.aio's INTERNAL; it
# follows within milliseconds when the connection died.
_UNHIDE_SECONDS = 2.0
_UNHIDE_POLL = 0.02


class StatusRecovery(CallHandle[CallT], Generic[CallT]):
    """The part of a sending handle that recovers statuses grpc.aio hid.

    The handle's done-callback records each attempt's first real status in
    ``_seen_status`` and resolves ``_status_waiters``; see ``Sender._call_done``.
    """

    _seen_status: tuple[CallT, BaseException] | None
    _status_waiters: list[asyncio.Future[None]]

    def _init_status_recovery(self) -> None:
        self._status_waiters = []
        # The first status each attempt's call reported that was not grpc.aio's hidden one.
        self._seen_status = None

    def _status_changed(self, call: CallT) -> None:
        """Called from the done-callback: wake waiters and keep the first real status."""
        waiters, self._status_waiters = self._status_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        seen = self._seen_status
        if seen is None or seen[0] is not call:
            real = self._core_status_error(call)
            if real is not None:
                self._seen_status = (call, real)

    async def _unhide(self, error: RpcError) -> BaseException:
        """The real status behind grpc.aio's ``INTERNAL: Internal error from Core``.

        When a write fails in the C-core because the stream or the connection ended,
        grpc.aio sets the call's status to that INTERNAL, over whatever status the call
        had. The real status (UNAVAILABLE for a server that died, or what the server sent)
        comes either just before (then ``_call_done`` saw it) or just after (the cython
        call stores it over the INTERNAL one and runs the done callbacks again). This
        waits for it (at most ``_UNHIDE_SECONDS``), so a dead server is the retryable
        ``Unavailable`` it is. If it never comes, the honest ``Unknown`` stays.

        Returns:
            The typed real status, ``BrokenStreamError`` if the server had ended the call
            OK, or ``error`` itself.
        """
        if error.details != HIDDEN_BROKEN_STREAM:
            return error
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _UNHIDE_SECONDS
        while True:
            real = self._core_status_error(self._call)
            if real is not None:
                return real
            remaining = give_up - loop.time()
            if remaining <= 0:
                return error
            waiter: asyncio.Future[None] = loop.create_future()
            self._status_waiters.append(waiter)
            try:
                # The done callbacks do not always run for the second status (one that
                # raises stops the rest), so the cython status is also checked regularly.
                await asyncio.wait((waiter,), timeout=min(remaining, _UNHIDE_POLL))
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._status_waiters.remove(waiter)

    def _core_status_error(self, call: CallT | None) -> BaseException | None:
        """The call's real status as an error; None while only the hidden one is known."""
        expired = self._idle_error
        if expired is not None and expired[0] is call:
            return expired[1]  # the CANCELLED status is ours: the stream was idle
        seen = self._seen_status
        if seen is not None and seen[0] is call:
            return seen[1]
        status = status_now(call) if call is not None else None
        if status is None:
            return None
        grpc_code, details, trailing_metadata = status
        if grpc_code is grpc.StatusCode.OK:
            return BrokenStreamError(SEND_ON_CLOSED)
        if is_hidden_internal(grpc_code, details):
            return None
        return self._translate(grpc_code, details, trailing_metadata)
