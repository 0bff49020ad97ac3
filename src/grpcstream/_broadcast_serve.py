"""Serving a Broadcast subscription over a server-streaming handler's ServerStream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._exceptions import Unavailable
from ._subscription import Subscription, _Empty

if TYPE_CHECKING:
    from ._broadcast import Broadcast
    from ._server_stream import ServerStream

__all__ = ["DRAINING", "serve_subscription"]

T = TypeVar("T")

DRAINING: Final = "the server is draining; resume after position {}"


async def serve_subscription(
    log: Broadcast[T],
    subscription: Subscription[T],
    stream: ServerStream[T],
    where: Callable[[T], bool] | None,
    limit: int | None,
) -> None:
    """Send ``subscription``'s entries through ``stream`` until one of the ends.

    See ``Broadcast.serve()``. The drain event is watched by one task per event, shared
    by every subscription served under it; the client leaving is seen through grpc's
    done-callback. So an idle served subscriber costs no task of its own, and it notices
    either end at once instead of at its next entry.
    """
    closing = stream.closing
    context = stream.grpc_context
    async with subscription:
        watch = _watch_closing(log, closing)
        watch.subscriptions.add(subscription)
        # The handler is parked in _wait() while idle: wake it as soon as the RPC is over.
        # (types-grpcio types the callback as a stub-only class no function can match.)
        context.add_done_callback(_waker(subscription))  # type: ignore[arg-type]
        try:
            sent = 0
            while True:
                if closing.is_set():
                    raise Unavailable(DRAINING.format(subscription.position))
                entry = subscription._take()
                if isinstance(entry, _Empty):
                    if log._closed or context.done():
                        return
                    if log._failure is not None:
                        raise subscription._unavailable()
                    await subscription._wait()
                    continue
                if where is not None and not where(entry):
                    continue
                await stream.send(entry)
                sent += 1
                if sent == limit:
                    return
        finally:
            watch.discard(subscription)


def _waker(subscription: Subscription[Any]) -> Callable[[object], None]:
    def wake(_context: object) -> None:
        subscription._wake()

    return wake


def _watch_closing(log: Broadcast[Any], closing: asyncio.Event) -> _ClosingWatch:
    # One watcher task per drain event (a server has one), not one per subscriber.
    watch = log._watches.get(closing)
    if watch is None:
        watch = log._watches[closing] = _ClosingWatch(log, closing)
    return watch


class _ClosingWatch:
    """Wakes every subscription served under one drain event when it is set."""

    __slots__ = ("_closing", "_log", "_task", "subscriptions")

    def __init__(self, log: Broadcast[Any], closing: asyncio.Event) -> None:
        self._log = log
        self._closing = closing
        self.subscriptions: set[Subscription[Any]] = set()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="grpcstream-broadcast-closing"
        )

    async def _run(self) -> None:
        await self._closing.wait()
        for subscription in list(self.subscriptions):
            subscription._wake()

    def discard(self, subscription: Subscription[Any]) -> None:
        self.subscriptions.discard(subscription)
        if not self.subscriptions:
            self._task.cancel()
            if self._log._watches.get(self._closing) is self:
                del self._log._watches[self._closing]
