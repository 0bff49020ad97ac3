"""What StreamServer wraps around every method handler when a servicer is added.

Generated ``add_<Service>Servicer_to_server`` functions hand their method handlers to the
server. ``StreamServer.add()`` gives them a `Registrar` instead, which wraps each
handler once, at registration, so that nothing is added per call unless it is needed:

* a request that does not parse ends the call with INVALID_ARGUMENT and a generic
  message, for every pattern (grpc.aio would answer UNKNOWN, quoting the exception class
  and the message type); the detail goes to the server log;
* with ``max_concurrent_rpcs``, a call takes a slot only once it reaches its handler:
  after authentication, so callers with bad tokens never hold one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from typing_extensions import override

from ._exceptions import InvalidArgument
from ._server_stream import UNPARSEABLE_REQUEST

__all__ = [
    "CONCURRENCY_DETAILS",
    "UNPARSEABLE",
    "UNPARSEABLE_REQUEST",
    "ConcurrencyLimit",
    "Registrar",
    "UnparseableRequest",
]

logger = logging.getLogger("grpcstream.server")

CONCURRENCY_DETAILS = "the server is handling as many calls as it allows (max_concurrent_rpcs)"

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = grpc.aio.ServicerContext[Any, Any]


class _Unparseable:
    """The request a unary-request handler gets when the bytes did not parse."""

    __slots__ = ()

    @override
    def __repr__(self) -> str:
        return "<unparseable request>"


UNPARSEABLE = _Unparseable()


class UnparseableRequest(InvalidArgument):
    """Raised by ``context.read()`` (and request iterators) for a message that did not parse."""


class ConcurrencyLimit:
    """Counts the calls inside their handlers; refuses calls beyond ``limit``."""

    __slots__ = ("active", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0


def _deserializer(
    deserialize: Callable[[bytes], Any], method: str, *, streaming: bool
) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:
            logger.warning("%s: unparseable request (%d bytes): %r", method, len(data), error)
            if streaming:
                raise UnparseableRequest(UNPARSEABLE_REQUEST) from None
            return UNPARSEABLE

    return parse


async def _refuse(context: Context, code: grpc.StatusCode, details: str) -> None:
    await context.abort(code, details)


def _guarded(behavior: Any, limit: ConcurrencyLimit | None, *, adapter: bool) -> Any:
    """``behavior`` with the unparseable-request answer and the concurrency slot."""
    if adapter and limit is None:
        return behavior  # grpcstream's adapters answer unparseable requests themselves

    async def enter(request: object, context: Context) -> None:
        if request is UNPARSEABLE:
            await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, UNPARSEABLE_REQUEST)
        if limit is not None:
            if limit.active >= limit.limit:
                await _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, CONCURRENCY_DETAILS)
            limit.active += 1

    def leave() -> None:
        if limit is not None:
            limit.active -= 1

    if inspect.isasyncgenfunction(behavior):

        async def stream_guarded(request: Any, context: Context) -> Any:
            await enter(request, context)
            try:
                async for response in behavior(request, context):
                    yield response
            except UnparseableRequest:
                await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, UNPARSEABLE_REQUEST)
            finally:
                leave()

        return stream_guarded
    if inspect.iscoroutinefunction(behavior):

        async def guarded(request: Any, context: Context) -> Any:
            await enter(request, context)
            try:
                return await behavior(request, context)
            except UnparseableRequest:
                await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, UNPARSEABLE_REQUEST)
            finally:
                leave()

        return guarded
    return behavior  # a synchronous handler (run in grpc's thread pool): left as it is


def wrap_handler(handler: Handler, method: str, limit: ConcurrencyLimit | None) -> Handler:
    """One method handler, wrapped as the module docstring describes."""
    if handler.request_streaming and handler.response_streaming:
        behavior, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        behavior, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        behavior, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    else:
        behavior, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        return handler  # synchronous: grpc's own behaviour, unchanged
    adapter = getattr(behavior, "_grpcstream_adapter", False)
    deserialize = handler.request_deserializer
    if deserialize is not None:
        deserialize = _deserializer(deserialize, method, streaming=handler.request_streaming)
    wrapped: Handler = factory(
        _guarded(behavior, limit, adapter=adapter),
        request_deserializer=deserialize,
        response_serializer=handler.response_serializer,
    )
    return wrapped


class Registrar:
    """Stands in for the grpc.aio server while a generated ``add_*_to_server`` runs."""

    def __init__(self, server: grpc.aio.Server, limit: ConcurrencyLimit | None) -> None:
        self._server = server
        self._limit = limit
        self._generic: list[grpc.GenericRpcHandler] = []
        self._registered: dict[str, dict[str, Handler]] = {}

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]
    ) -> None:
        """Collect generic handlers; those of a registered service are replaced."""
        self._generic.extend(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Handler]
    ) -> None:
        """Collect one service's method handlers, wrapped."""
        self._registered[service_name] = {
            name: wrap_handler(handler, f"/{service_name}/{name}", self._limit)
            for name, handler in method_handlers.items()
        }

    def __getattr__(self, name: str) -> Any:
        # A hand-written add_to_server may use more of the server than the two methods
        # generated code calls: hand it the real thing.
        return getattr(self._server, name)

    def register(self) -> None:
        """Add everything collected to the real server."""
        server = self._server
        for service, handlers in self._registered.items():
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, handlers),)
            )
            server.add_registered_method_handlers(service, handlers)
        replaced = set(self._registered)
        others = [
            generic
            for generic in self._generic
            if not (
                isinstance(generic, grpc.ServiceRpcHandler) and generic.service_name() in replaced
            )
        ]
        if others:
            server.add_generic_rpc_handlers(others)
