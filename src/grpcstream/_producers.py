"""ProducerSet: the tasks a stream's owner spawned to feed it, living exactly as long as it.

Client handles and ``ServerStream`` both offer ``spawn()``. A producer is a task, not a
lexical scope (it is started from inside a block and may outlive the statement that
started it), so this is a small nursery rather than an ``asyncio.TaskGroup``: the first
producer that raises is kept, the others are cancelled, and the owner is told so it can
end the call; waiting and cancelling are the owner's decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["NO_PRODUCERS", "ProducerSet"]


class ProducerSet:
    """The producer tasks of one stream.

    Args:
        name: the default task name (``grpcstream-producer /pkg.Service/Method``).
        on_failure: called once, with the first exception a producer raised, after the
            other producers were cancelled.
        ignore: exceptions that end a producer quietly (the server's
            ``BrokenStreamError``: the client left, which ends the call anyway).
    """

    __slots__ = ("_error", "_ignore", "_name", "_on_failure", "_tasks")

    def __init__(
        self,
        name: str,
        on_failure: Callable[[BaseException], object],
        *,
        ignore: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._name = name
        self._on_failure = on_failure
        self._ignore = ignore
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    def spawn(self, producer: Coroutine[Any, Any, None], name: str | None) -> None:
        """Start ``producer`` as a task of this set."""
        task = asyncio.get_running_loop().create_task(producer, name=name or self._name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None or isinstance(error, self._ignore) or self._error is not None:
            return
        self._error = error
        self.cancel()
        self._on_failure(error)

    @property
    def error(self) -> BaseException | None:
        """The first exception a producer raised, if any."""
        return self._error

    def raise_error(self) -> None:
        """Raise the first producer's exception, if one failed."""
        if self._error is not None:
            raise self._error

    async def wait(self) -> None:
        """Wait until every producer has ended (including ones spawned meanwhile)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def cancel(self) -> None:
        """Cancel every producer still running."""
        for task in self._tasks:
            task.cancel()

    async def cancel_and_wait(self) -> None:
        """Cancel every producer and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _never(error: BaseException) -> None:
    raise AssertionError("NO_PRODUCERS never runs a task")  # pragma: no cover


NO_PRODUCERS: ProducerSet = ProducerSet("grpcstream-no-producers", _never)
"""The empty set every stream starts with; its first ``spawn()`` replaces it with its own
(most streams never spawn, and a set per stream would cost memory for nothing)."""
