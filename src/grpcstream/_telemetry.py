"""Telemetry: the opt-in switch for OpenTelemetry metrics and traces, and the hooks.

The rest of grpcstream talks to telemetry only through the few hooks below. With
telemetry off they are a no-op object (client handles) or one ``ContextVar.get()`` per
stream (server side), so nothing is paid per message. Everything that imports
``opentelemetry`` lives in ``_otel``, which is imported only when a ``Telemetry`` is
created, so the ``otel`` extra stays optional.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from typing_extensions import override

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._base import Metadata
    from ._broadcast import Broadcast
    from ._otel import Instruments
    from ._otel_server import ServerCall
    from ._retry import RetryEvent
    from ._send_queue import SendQueue

__all__ = ["NO_CALL", "CallTelemetry", "Telemetry"]

OTEL_MISSING = (
    "grpcstream.Telemetry needs OpenTelemetry: install the extra with "
    "`pip install 'grpcstream[otel]'` (opentelemetry-api)"
)


class CallTelemetry:
    """What a client call handle reports to; this base class records nothing.

    ``_otel.ClientCall`` overrides every method. Handles hold ``NO_CALL`` when the client
    has no telemetry, so each hook is one attribute lookup and an empty call.
    """

    __slots__ = ()

    def bind(self, handle: object) -> None:
        """The handle this call's numbers come from (set once, when it is created)."""

    def inject(self, metadata: Metadata | None) -> Metadata | None:
        """An attempt starts: return its metadata (with trace context when tracing)."""
        return metadata

    def retrying(self, event: RetryEvent) -> None:
        """The retry policy decided to start another attempt after ``event``."""

    def attach_queue(self, queue: SendQueue[Any]) -> None:
        """The send queue of a client or bidi stream, once it exists."""

    def half_closed(self) -> None:
        """``close_send()`` was called."""

    def finish(self, handle: object) -> None:
        """The handle is done (left its block, or the unary call completed)."""


NO_CALL = CallTelemetry()

# The server call (an ``_otel.ServerCall``) of the RPC being handled, set by the
# telemetry interceptor; handler tasks and producers inherit it with their context.
SERVER_CALL: contextvars.ContextVar[ServerCall] = contextvars.ContextVar("grpcstream_server_call")


def attach_server_queue(queue: SendQueue[Any]) -> None:
    """A ``ServerStream`` was created: let the current server call observe its queue."""
    call = SERVER_CALL.get(None)
    if call is not None:
        call.attach_queue(queue)


def attach_request_stream(requests: object) -> None:
    """A ``RequestStream`` was created: its ``received`` count is the call's."""
    call = SERVER_CALL.get(None)
    if call is not None:
        call.requests = requests


def server_half_closed() -> None:
    """A ``RequestStream`` read the client's half-close."""
    call = SERVER_CALL.get(None)
    if call is not None:
        call.event("half_close")


class Telemetry:
    """OpenTelemetry metrics and traces for grpcstream's clients and servers.

    Pass one to ``StreamServer(..., telemetry=...)`` and ``StreamClient(...,
    telemetry=...)``. Without it nothing is instrumented. Needs the ``otel`` extra
    (``pip install 'grpcstream[otel]'``, which brings ``opentelemetry-api`` only); the
    SDK, exporters and their configuration stay the application's choice.

    Metrics follow the OpenTelemetry RPC conventions (``rpc.client.call.duration``,
    ``rpc.server.call.duration`` with ``rpc.system``, ``rpc.service``, ``rpc.method`` and
    ``rpc.grpc.status_code``) and add what only grpcstream knows: messages per stream
    side, send-queue depth, blocked senders and their wait, retries and resumes with
    their cause, replay-buffer bytes and drain outcomes. No attribute names a stream or
    a peer, so cardinality is bounded by the number of methods. Messages are counted by
    reading each stream's own counters when metrics are collected: nothing is recorded
    per message.

    Traces: one span per RPC on each side (``{service}/{method}``). W3C trace context
    travels in the call's metadata, so a server span is a child of its client span. With
    a ``RetryPolicy``, each attempt is a child span linked from the call's span, with
    ``retry`` and ``resume`` events (the resume carries the position); ``half_close``
    and ``drain`` are events too.

    Args:
        meter_provider: where metrics go; ``None`` uses the global provider (a no-op
            until the application configures one).
        tracer_provider: where spans go; ``None`` uses the global provider.
        metrics: record metrics.
        traces: record spans and propagate trace context.

    Raises:
        ImportError: the ``otel`` extra (``opentelemetry-api``) is not installed.
        TypeError: a provider that is not an OpenTelemetry provider.
    """

    __slots__ = ("_instruments",)

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        metrics: bool = True,
        traces: bool = True,
    ) -> None:
        try:
            from ._otel import Instruments
        except ImportError as exc:  # pragma: no cover - the dev environment has the extra
            raise ImportError(OTEL_MISSING) from exc
        self._instruments: Instruments = Instruments(
            meter_provider=meter_provider,
            tracer_provider=tracer_provider,
            metrics=metrics,
            traces=traces,
        )

    @override
    def __repr__(self) -> str:
        return f"<Telemetry {self._instruments.describe()}>"

    def observe_broadcast(self, log: Broadcast[Any], *, name: str) -> None:
        """Export a ``Broadcast``'s size, subscribers, lag and drops under ``name``.

        The instruments (``grpcstream.broadcast.*``) read ``log.statistics()`` and the
        subscriptions' counters when metrics are collected, so publishing costs nothing
        more. Their one attribute, ``grpcstream.broadcast.name``, is ``name``: subscribers
        are aggregated (the largest lag, the sum of drops), never one series each. The
        log is held weakly: once it is garbage, its series stop. Observing the same log
        under the same name again does nothing.

        Args:
            log: the log to observe.
            name: a short, fixed name for it (an attribute value: keep it bounded).

        Raises:
            TypeError: ``log`` is not a ``Broadcast``, or ``name`` is not a string.
            ValueError: ``name`` is empty, or already names another live log.
        """
        from ._broadcast import Broadcast

        if not isinstance(log, Broadcast):
            raise TypeError(f"observe_broadcast() takes a Broadcast, not {type(log).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("name must not be empty")
        self._instruments.broadcasts.add(log, name)

    @property
    def open_streams(self) -> int:
        """Calls (client and server) this telemetry is observing right now."""
        return self._instruments.live_count()
