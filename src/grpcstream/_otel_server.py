"""The server half of grpcstream's OpenTelemetry support: the interceptor and ServerCall.

The interceptor wraps each method's handler once (cached per method), so an RPC costs a
``ServerCall`` and a span; the ``ServerStream`` and ``RequestStream`` that the handler
creates find the call through a context variable and are observed, not instrumented.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from typing_extensions import override

from ._grpc_compat import context_code
from ._otel import OUTCOME, Instruments, Key, wait_recorder
from ._send_queue import SendQueue
from ._server_interceptors import Continuation, MaybeHandler
from ._telemetry import SERVER_CALL

__all__ = ["ServerCall", "TelemetryInterceptor"]

# The conventions' list of server codes that make a server span an error.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_TRACE_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


class ServerCall:
    """One server call: its span, and the stream objects its numbers come from.

    ``with call:`` around the handler finishes the call with the status it ended with.
    """

    __slots__ = (
        "__weakref__",
        "_context",
        "_instruments",
        "_start",
        "draining",
        "key",
        "queue",
        "request_streaming",
        "requests",
        "span",
    )

    def __init__(
        self,
        instruments: Instruments,
        method: str,
        key: Key,
        context: grpc.aio.ServicerContext[Any, Any],
        request_streaming: bool,
    ) -> None:
        self._instruments = instruments
        self._context = context
        self.key = key
        self.request_streaming = request_streaming
        self.queue: SendQueue[Any] | None = None
        self.requests: object = None
        self.draining = False
        self.span: Span | None = None
        self._start = time.perf_counter()
        if instruments.traces:
            carrier = {
                key: value
                for key, value in (context.invocation_metadata() or ())
                if key in _TRACE_KEYS and isinstance(value, str)
            }
            span = instruments.tracer.start_span(
                method.lstrip("/"),
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes=instruments.span_attrs(key),
            )
            self.span = span if span.get_span_context().is_valid else None
        instruments.live.add(self)

    def __enter__(self) -> ServerCall:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The code the handler set on its context, else OK for a return and UNKNOWN for an
        # exception; a cancelled handler is CANCELLED (cut off, if the server was draining).
        if exc_type is None:
            self.finish(context_code(self._context, grpc.StatusCode.OK))
        elif issubclass(exc_type, asyncio.CancelledError):
            self.finish(grpc.StatusCode.CANCELLED, cancelled=True)
        else:
            self.finish(context_code(self._context, grpc.StatusCode.UNKNOWN))

    def attach_queue(self, queue: SendQueue[Any]) -> None:
        self.queue = queue
        if self._instruments.metrics:
            queue._on_wait = wait_recorder(self._instruments, self.key)

    def drain_started(self) -> None:
        self.draining = True
        self.event("drain")

    def event(self, name: str) -> None:
        if self.span is not None:
            self.span.add_event(name)

    def sent(self) -> int:
        return 0 if self.queue is None else self.queue.statistics().sent

    def received(self) -> int:
        if not self.request_streaming:
            return 1
        return int(getattr(self.requests, "_received", 0))

    def replay_bytes(self) -> int:
        return 0

    def finish(self, code: grpc.StatusCode, *, cancelled: bool = False) -> None:
        instruments = self._instruments
        sent = self.sent()
        if self.queue is None and code is grpc.StatusCode.OK:
            sent = 1  # a unary or client-streaming handler's single response
        instruments.ended(self, sent, self.received())
        instruments.server_duration.record(
            time.perf_counter() - self._start, instruments.status_attrs(self.key, code)
        )
        if self.draining:
            outcome = "cut_off" if cancelled else "finished"
            instruments.drained.add(1, instruments.with_(self.key, OUTCOME, outcome))
        span = self.span
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in _SERVER_ERRORS:
                span.set_status(Status(StatusCode.ERROR, code.name))
            span.end()


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler once per method: a span and a ``ServerCall`` per RPC."""

    def __init__(self, instruments: Instruments) -> None:
        self._instruments = instruments
        # Per method: the handler grpc returned and our wrapper of it (made once).
        self._wrapped: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

    @override
    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MaybeHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped: grpc.RpcMethodHandler[Any, Any] = self._wrap_handler(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap_handler(self, handler: Any, method: str) -> Any:
        for field in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, field, None)
            if behavior is not None:
                wrapped = self._wrap(behavior, method, field.startswith("stream"))
                return handler._replace(**{field: wrapped})
        return handler

    def _wrap(self, behavior: Behavior, method: str, request_streaming: bool) -> Behavior:
        instruments = self._instruments
        key = instruments.key("server", method)

        def start(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[ServerCall, Any, Any]:
            call = ServerCall(instruments, method, key, context, request_streaming)
            token = SERVER_CALL.set(call)
            span = call.span
            attached = None
            if span is not None:
                attached = otel_context.attach(trace.set_span_in_context(span))
            return call, token, attached

        def end(token: Any, attached: Any) -> None:
            if attached is not None:
                otel_context.detach(attached)
            SERVER_CALL.reset(token)

        if inspect.isasyncgenfunction(behavior):
            # A raw grpc.aio handler that yields responses (health's Watch, for instance).
            # Measured, but its span is not made current: a generator may be finalized in
            # another context than the one it started in.
            async def wrapped_gen(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                with ServerCall(instruments, method, key, context, request_streaming):
                    async for response in behavior(request, context):
                        yield response

            return wrapped_gen
        if not inspect.iscoroutinefunction(behavior):
            return behavior  # a synchronous handler: grpc runs it in its executor; left alone

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call, token, attached = start(context)
            try:
                with call:
                    result = await behavior(request, context)
            finally:
                end(token, attached)
            return result

        return wrapped
