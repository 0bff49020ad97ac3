"""Server interceptors every StreamServer can install, and what they share."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import grpc.aio
from typing_extensions import override

__all__ = [
    "METADATA_TOO_LARGE",
    "Continuation",
    "MaybeHandler",
    "MetadataLimit",
    "metadata_size",
    "rejecting",
]

logger = logging.getLogger("grpcstream.server")

MaybeHandler: TypeAlias = "grpc.RpcMethodHandler[Any, Any] | None"
"""What an interceptor returns: the method's handler, or None for an unknown method."""

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[MaybeHandler]]
"""What a grpc.aio interceptor calls to find the next interceptor's (or the) handler."""

METADATA_TOO_LARGE = "request metadata size exceeds the server's limit of {} bytes"


def metadata_size(metadata: object) -> int:
    """The size of request metadata as HTTP/2 counts a header list: name + value + 32 each."""
    total = 0
    for key, value in metadata or ():  # type: ignore[attr-defined]
        total += len(key) + len(value) + 32
    return total


class MetadataLimit(grpc.aio.ServerInterceptor):
    """Refuse calls whose request metadata exceeds ``limit`` bytes (RESOURCE_EXHAUSTED).

    grpc's own ``grpc.max_metadata_size`` check can be bypassed by a client that splits
    the header block into HEADERS and CONTINUATION frames; this measures what the call
    actually carries, before authentication or any handler runs.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._details = METADATA_TOO_LARGE.format(limit)

    @override
    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MaybeHandler:
        """Measure the metadata; refuse the call or hand it on."""
        size = metadata_size(handler_call_details.invocation_metadata)
        if size > self._limit:
            logger.warning(
                "refused %s: %d bytes of metadata (limit %d)",
                handler_call_details.method,
                size,
                self._limit,
            )
            return rejecting(grpc.StatusCode.RESOURCE_EXHAUSTED, self._details)
        return await continuation(handler_call_details)


def rejecting(
    code: grpc.StatusCode, details: str, trailing_metadata: object = ()
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that ends the call with ``code`` at once, whatever the method's pattern.

    A stream-stream handler neither waits for a request message nor needs one, so it
    answers unary and streaming calls alike before the client has sent anything.
    """

    async def reject(requests: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, details, trailing_metadata)  # type: ignore[arg-type]

    return grpc.stream_stream_rpc_method_handler(reject)
