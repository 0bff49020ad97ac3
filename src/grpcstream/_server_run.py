"""How one handler call runs: its status at the end, its task, and the grace after a client left.

The adapters in ``_server_servicer`` call ``end_with()`` for a handler's error and
``run_streaming()`` for a server-streaming or bidi handler, which runs in a task of its
own so that it sees ``BrokenStreamError`` (not a bare ``CancelledError``) when the
client goes away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, NoReturn

import grpc
import grpc.aio

from ._exceptions import BrokenStreamError, Cancelled, RpcError, Unavailable
from ._server_stream import CLIENT_GONE, ServerStream

__all__ = [
    "CLIENT_GONE_GRACE",
    "INTERNAL_ERROR_DETAILS",
    "SERVER_DRAINING",
    "end_with",
    "run_streaming",
]

logger = logging.getLogger("grpcstream.server")

INTERNAL_ERROR_DETAILS = "internal server error"
"""The only details a client sees when a handler raises something other than RpcError."""

SERVER_DRAINING = "server draining: continue on another server (the stream was not complete)"
"""The details of the UNAVAILABLE a streaming handler's call ends with when it returns in a
drain without ``ServerStream.complete()``."""

CLIENT_GONE_GRACE = 0.5
"""Seconds a streaming handler gets to return after the client went away, before it is
cancelled: enough to see ``BrokenStreamError`` from ``send()`` and clean up."""


async def end_with(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException, method: str
) -> NoReturn:
    """End the RPC with the status ``error`` stands for (INTERNAL if it is not an RpcError)."""
    if isinstance(error, grpc.aio.AbortError):
        raise error  # the handler already called grpc's context.abort(): that is the status
    if isinstance(error, RpcError):
        await context.abort(error.code, error.details, error.trailing_metadata)
    logger.error("handler %s raised; the client gets INTERNAL", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR_DETAILS)


async def run_streaming(
    body: Awaitable[None],
    stream: ServerStream[Any],
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    active: set[asyncio.Task[Any]] | None,
) -> None:
    # The handler runs in its own task so that when grpc cancels this one (client gone,
    # server past its grace period) the handler sees BrokenStreamError from send() and can
    # clean up, instead of a bare CancelledError at whatever it was awaiting. The server
    # tracks this (grpc's) task so that a drain returns only once the cleanup is done.
    this_rpc = asyncio.current_task()
    if active is not None and this_rpc is not None:
        active.add(this_rpc)
    task = asyncio.get_running_loop().create_task(
        _as_coroutine(body), name=f"grpcstream-handler {method}"
    )
    stream._handler_task = task
    try:
        error = await _outcome(task, stream)
    except asyncio.CancelledError:
        stream._client_gone()
        await _reap(task)
        await stream._abandon()
        raise
    finally:
        if active is not None and this_rpc is not None:
            active.discard(this_rpc)
    if error is not None:
        await end_with(context, error, method)


async def _outcome(task: asyncio.Task[None], stream: ServerStream[Any]) -> BaseException | None:
    """Wait for the handler and its producers; return the error that ends the RPC, if any."""
    await asyncio.wait((task,))
    error = stream._producer_error or _handler_error(task)
    if error is None:
        try:
            await stream._finish()
        except BrokenStreamError:
            error = BrokenStreamError(CLIENT_GONE)
        except Exception as exc:  # a producer's failure
            error = exc
        else:
            if stream.closing.is_set() and not stream.completed:
                # It returned because of the drain (or may have): tell the client to
                # continue elsewhere. What it sent was flushed ahead of this status.
                return Unavailable(SERVER_DRAINING, code=grpc.StatusCode.UNAVAILABLE)
            return None
    # What the handler sent before failing still reaches the client, ahead of the status.
    await stream._abandon(flush=not isinstance(error, BrokenStreamError))
    if isinstance(error, BrokenStreamError):
        return None  # the client left; there is nobody to tell
    return error


def _handler_error(task: asyncio.Task[None]) -> BaseException | None:
    if task.cancelled():
        # Nobody cancelled this RPC (that is handled by the caller): the handler cancelled
        # itself. The client must still get a status rather than wait for its deadline.
        return Cancelled("the handler was cancelled", code=grpc.StatusCode.CANCELLED)
    return task.exception()


async def _reap(task: asyncio.Task[None]) -> None:
    _, pending = await asyncio.wait((task,), timeout=CLIENT_GONE_GRACE)
    if pending:
        task.cancel()
        await asyncio.wait((task,))
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        if not isinstance(error, BrokenStreamError | RpcError):
            logger.error("handler raised after the client left", exc_info=error)


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable
