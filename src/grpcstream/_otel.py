"""The OpenTelemetry implementation behind ``grpcstream.Telemetry`` (the ``otel`` extra).

Only this module and ``_otel_server`` import ``opentelemetry``. Message counts, queue
depth, blocked senders and replay-buffer bytes are *observed*: the SDK's collection reads
the counters every stream keeps anyway, so the message path records nothing. Histograms
and counters are recorded once per call, per blocked ``send()``, per retry and per drained
stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
import grpc.aio
from opentelemetry import propagate, trace
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
    get_meter_provider,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue
from typing_extensions import override

from ._base import Metadata
from ._grpc_compat import status_now
from ._otel_broadcast import BroadcastObserver
from ._retry import RetryEvent
from ._send_queue import SendQueue
from ._telemetry import CallTelemetry
from ._version import __version__

if TYPE_CHECKING:
    from ._client_handle import CallHandle
    from ._otel_server import ServerCall, TelemetryInterceptor

__all__ = ["ClientCall", "Instruments"]

SCOPE = "grpcstream"

# Instrument names: the RPC semantic conventions where they apply, grpcstream.* otherwise.
CLIENT_DURATION: Final = "rpc.client.call.duration"
SERVER_DURATION: Final = "rpc.server.call.duration"
MESSAGES_SENT: Final = "grpcstream.messages.sent"
MESSAGES_RECEIVED: Final = "grpcstream.messages.received"
STREAMS_ACTIVE: Final = "grpcstream.streams.active"
QUEUE_DEPTH: Final = "grpcstream.send_queue.depth"
BLOCKED_SENDERS: Final = "grpcstream.send_queue.blocked_senders"
SEND_WAIT: Final = "grpcstream.send.wait.duration"
RETRIES: Final = "grpcstream.client.retries"
RESUMES: Final = "grpcstream.client.resumes"
REPLAY_BYTES: Final = "grpcstream.client.replay_buffer.size"
DRAINED: Final = "grpcstream.server.drained_streams"
BATCHES_SENT: Final = "grpcstream.batches.sent"

# Each instrument's (unit, description), by name.
DESCRIPTIONS: Final[dict[str, tuple[str, str]]] = {
    CLIENT_DURATION: ("s", "Duration of an outgoing RPC (a stream: until it ends)."),
    SERVER_DURATION: ("s", "Duration of an incoming RPC (a stream: until it ends)."),
    SEND_WAIT: ("s", "How long a send() waited for room in a full send queue."),
    RETRIES: ("{attempt}", "Attempts re-opened by the retry policy."),
    RESUMES: ("{attempt}", "Streams re-opened with resume= after partial delivery."),
    DRAINED: ("{stream}", "Server calls open during a drain, by outcome (finished or cut_off)."),
    MESSAGES_SENT: ("{message}", "Messages handed to gRPC by grpcstream's streams."),
    MESSAGES_RECEIVED: ("{message}", "Messages delivered to the application."),
    STREAMS_ACTIVE: ("{stream}", "Calls in progress."),
    QUEUE_DEPTH: ("{message}", "Messages waiting in send queues (summed per method and side)."),
    BLOCKED_SENDERS: ("{task}", "Tasks waiting in send() for room in a full queue."),
    BATCHES_SENT: ("{batch}", "Batches (wire messages) written by coalescing send queues."),
    REPLAY_BYTES: ("By", "Bytes held for replay by retried client and bidi streams."),
}

SIDE = "grpcstream.side"
CAUSE = "grpcstream.retry.cause"
OUTCOME = "grpcstream.drain.outcome"
ATTEMPT = "grpcstream.attempt"
POSITION = "grpcstream.resume.position"

# Seconds: RPCs from a millisecond to long-lived streams (the SDK's default buckets are
# milliseconds-shaped and would put every stream in the last one).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

Attributes = dict[str, AttributeValue]
Key = tuple[str, str, str]  # (side, service, method)


def split_method(full: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> ``("pkg.Service", "Method")``."""
    service, _, method = full.lstrip("/").rpartition("/")
    return (service or "unknown", method or "unknown")


class Instruments:
    """The meter's instruments, the tracer, and the calls being observed."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None,
        tracer_provider: TracerProvider | None,
        metrics: bool,
        traces: bool,
    ) -> None:
        if meter_provider is not None and not isinstance(meter_provider, MeterProvider):
            raise TypeError(
                f"meter_provider must be an OpenTelemetry MeterProvider, got {meter_provider!r}"
            )
        if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
            raise TypeError(
                f"tracer_provider must be an OpenTelemetry TracerProvider, got {tracer_provider!r}"
            )
        self.metrics = metrics
        self.traces = traces
        self.live: set[ClientCall | ServerCall] = set()
        self._finished: dict[Key, list[int]] = {}  # key -> [sent, received] of ended calls
        self._finished_batches: dict[Key, int] = {}  # batched queues of ended calls
        self.broadcasts = BroadcastObserver()
        self._keys: dict[tuple[str, str], Key] = {}
        self._attrs: dict[Key, Attributes] = {}  # metric attributes: with grpcstream.side
        self._span_attrs: dict[Key, Attributes] = {}  # span attributes: the RPC's only
        self._coded: dict[tuple[Key, str, str], Attributes] = {}
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            SCOPE, __version__
        )
        if not metrics:
            meter_provider = NoOpMeterProvider()  # metrics=False: the histograms record nothing
        meter = (meter_provider or get_meter_provider()).get_meter(SCOPE, __version__)

        def histogram(name: str, buckets: Sequence[float]) -> Histogram:
            unit, description = DESCRIPTIONS[name]
            return meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=buckets,
            )

        def counter(name: str) -> Counter:
            unit, description = DESCRIPTIONS[name]
            return meter.create_counter(name, unit=unit, description=description)

        self.client_duration = histogram(CLIENT_DURATION, DURATION_BUCKETS)
        self.server_duration = histogram(SERVER_DURATION, DURATION_BUCKETS)
        self.send_wait = histogram(SEND_WAIT, WAIT_BUCKETS)
        self.retries = counter(RETRIES)
        self.resumes = counter(RESUMES)
        self.drained = counter(DRAINED)
        if metrics:
            observed = (
                (meter.create_observable_counter, MESSAGES_SENT, self._observe_sent),
                (meter.create_observable_counter, MESSAGES_RECEIVED, self._observe_received),
                (meter.create_observable_up_down_counter, STREAMS_ACTIVE, self._observe_active),
                (meter.create_observable_gauge, QUEUE_DEPTH, self._observe_depth),
                (meter.create_observable_gauge, BLOCKED_SENDERS, self._observe_blocked),
                (meter.create_observable_counter, BATCHES_SENT, self._observe_batches),
                (meter.create_observable_gauge, REPLAY_BYTES, self._observe_replay),
            )
            for create, name, callback in observed:
                unit, description = DESCRIPTIONS[name]
                create(name, [callback], unit=unit, description=description)
            self.broadcasts.register(meter)

    def describe(self) -> str:
        return f"metrics={self.metrics} traces={self.traces}"

    def live_count(self) -> int:
        return len(self.live)

    # -- attributes (cached: bounded by the number of methods) ---------------------------

    def key(self, side: str, full_method: str) -> Key:
        key = self._keys.get((side, full_method))
        if key is None:
            service, method = split_method(full_method)
            key = self._keys[(side, full_method)] = (side, service, method)
            span_attrs: Attributes = {
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": method,
            }
            self._span_attrs[key] = span_attrs
            self._attrs[key] = {**span_attrs, SIDE: side}
        return key

    def attrs(self, key: Key) -> Attributes:
        return self._attrs[key]

    def span_attrs(self, key: Key) -> Attributes:
        return self._span_attrs[key]

    def with_(self, key: Key, name: str, value: str) -> Attributes:
        found = self._coded.get((key, name, value))
        if found is None:
            found = self._coded[(key, name, value)] = {**self.span_attrs(key), name: value}
        return found

    def status_attrs(self, key: Key, code: grpc.StatusCode) -> Attributes:
        found = self._coded.get((key, "status", code.name))
        if found is None:
            found = self._coded[(key, "status", code.name)] = {
                **self.span_attrs(key),
                "rpc.grpc.status_code": code.value[0],
            }
        return found

    def ended(self, call: ClientCall | ServerCall, sent: int, received: int) -> None:
        self.live.discard(call)
        totals = self._finished.setdefault(call.key, [0, 0])
        totals[0] += sent
        totals[1] += received
        batches = _batches(call.queue)
        if batches is not None:
            self._finished_batches[call.key] = self._finished_batches.get(call.key, 0) + batches

    def drain_started(self) -> None:
        for call in tuple(self.live):
            call.drain_started()

    # -- observable callbacks (may run on an exporter's thread: copy before iterating) ---

    def _sum_live(self, value: Callable[[ClientCall | ServerCall], int]) -> dict[Key, int]:
        sums: dict[Key, int] = {}
        for call in tuple(self.live):
            sums[call.key] = sums.get(call.key, 0) + value(call)
        return sums

    def _observations(self, sums: dict[Key, int]) -> Iterable[Observation]:
        return [Observation(total, self._attrs[key]) for key, total in sums.items()]

    def _observe_sent(self, options: CallbackOptions) -> Iterable[Observation]:
        sums = self._sum_live(lambda call: call.sent())
        for key, (sent, _) in tuple(self._finished.items()):
            sums[key] = sums.get(key, 0) + sent
        return self._observations(sums)

    def _observe_received(self, options: CallbackOptions) -> Iterable[Observation]:
        sums = self._sum_live(lambda call: call.received())
        for key, (_, received) in tuple(self._finished.items()):
            sums[key] = sums.get(key, 0) + received
        return self._observations(sums)

    def _observe_batches(self, options: CallbackOptions) -> Iterable[Observation]:
        sums = dict(self._finished_batches)
        for call in tuple(self.live):
            batches = _batches(call.queue)
            if batches is not None:
                sums[call.key] = sums.get(call.key, 0) + batches
        return self._observations(sums)

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        sums = self._sum_live(lambda call: 1)
        for key in tuple(self._finished):
            sums.setdefault(key, 0)  # report 0 rather than nothing once all have ended
        return self._observations(sums)

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observations(self._sum_live(lambda call: _queue_stat(call.queue, 0)))

    def _observe_blocked(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observations(self._sum_live(lambda call: _queue_stat(call.queue, 3)))

    def _observe_replay(self, options: CallbackOptions) -> Iterable[Observation]:
        sums = self._sum_live(lambda call: call.replay_bytes())
        return self._observations({key: total for key, total in sums.items() if key[0] == "client"})

    # -- factories -----------------------------------------------------------------------

    def client_call(self, method_name: str) -> ClientCall:
        return ClientCall(self, method_name)

    def retry_counter(self, method_name: str) -> CallTelemetry:
        return _RetryCounter(self, self.key("client", method_name))

    def interceptor(self) -> TelemetryInterceptor:
        from ._otel_server import TelemetryInterceptor

        return TelemetryInterceptor(self)


def _queue_stat(queue: SendQueue[Any] | None, index: int) -> int:
    return 0 if queue is None else int(queue.statistics()[index])


def _batches(queue: SendQueue[Any] | None) -> int | None:
    """Batches written by a coalescing queue; ``None`` for any other (it writes entries)."""
    if queue is None or queue._packer is None:
        return None
    return queue.statistics().batches


def wait_recorder(instruments: Instruments, key: Key) -> Callable[[float], None]:
    histogram = instruments.send_wait
    attributes = instruments.attrs(key)

    def record(seconds: float) -> None:
        histogram.record(seconds, attributes)

    return record


def final_code(call: grpc.aio.Call | None) -> grpc.StatusCode:
    """The status of a finished grpc.aio call, read without awaiting (``status_now()``)."""
    if call is None:
        return grpc.StatusCode.UNKNOWN  # never started (its token source failed)
    status = status_now(call)
    if status is None:
        return grpc.StatusCode.CANCELLED  # still running as its handle ends: cancelled
    return status[0]


class _RetryCounter(CallTelemetry):
    """Counts the retries of ``StreamClient.unary()`` (each attempt is its own call)."""

    __slots__ = ("_instruments", "_key")

    def __init__(self, instruments: Instruments, key: Key) -> None:
        self._instruments = instruments
        self._key = key

    @override
    def retrying(self, event: RetryEvent) -> None:
        self._instruments.retries.add(1, self._instruments.with_(self._key, CAUSE, event.code.name))


class ClientCall(CallTelemetry):
    """One client call: its span, attempts, and the handle its numbers come from."""

    __slots__ = (
        "__weakref__",
        "_attempt_span",
        "_attempts",
        "_done",
        "_half_closed",
        "_handle",
        "_instruments",
        "_name",
        "_span",
        "_start",
        "key",
        "queue",
    )

    def __init__(self, instruments: Instruments, method_name: str) -> None:
        self._instruments = instruments
        self.key = instruments.key("client", method_name)
        self._name = method_name.lstrip("/")
        self._handle: CallHandle | None = None
        self._attempts = 0
        self._done = False
        self._half_closed = False
        self._attempt_span: Span | None = None
        self.queue: SendQueue[Any] | None = None
        self._start = 0.0
        self._span: Span | None = None

    @override
    def bind(self, handle: object) -> None:
        self._handle = cast("CallHandle", handle)

    def _started(self) -> None:
        # The first attempt starts the call: a handle that is never entered costs nothing
        # and is never observed.
        instruments = self._instruments
        self._start = time.perf_counter()
        instruments.live.add(self)
        if instruments.traces:
            span = instruments.tracer.start_span(
                self._name, kind=SpanKind.CLIENT, attributes=instruments.span_attrs(self.key)
            )
            # No tracer provider configured: the span is invalid; nothing to send or record.
            # (A sampled-out span is valid, and its context still travels.)
            self._span = span if span.get_span_context().is_valid else None

    @override
    def inject(self, metadata: Metadata | None) -> Metadata | None:
        self._attempts += 1
        if self._attempts == 1:
            self._started()
        span = self._span
        if span is None:
            return metadata
        parent = span
        if self._handle is not None and self._handle._retrier is not None:
            # One span per attempt, child of the call's span and linked from it: the
            # server span of each attempt hangs under its attempt.
            self._end_attempt(None)
            parent = self._instruments.tracer.start_span(
                f"Attempt.{self._name}",
                context=trace.set_span_in_context(span),
                kind=SpanKind.INTERNAL,
                attributes={ATTEMPT: self._attempts},
            )
            span.add_link(parent.get_span_context(), {ATTEMPT: self._attempts})
            self._attempt_span = parent
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(parent))
        return (*(metadata or ()), *carrier.items())

    def _end_attempt(self, code: grpc.StatusCode | None) -> None:
        attempt = self._attempt_span
        if attempt is None:
            return
        if code is not None:
            attempt.set_attribute("rpc.grpc.status_code", code.value[0])
            if code is not grpc.StatusCode.OK:
                attempt.set_status(Status(StatusCode.ERROR, code.name))
        attempt.end()
        self._attempt_span = None

    @override
    def retrying(self, event: RetryEvent) -> None:
        handle = self._handle
        instruments = self._instruments
        resumed = handle is not None and handle._resumed()
        cause = event.code.name
        counter = instruments.resumes if resumed else instruments.retries
        counter.add(1, instruments.with_(self.key, CAUSE, cause))
        span = self._span
        if span is None:
            return
        attributes: Attributes = {
            ATTEMPT: self._attempts,  # the call's failed attempt (the policy's restarts)
            CAUSE: cause,
            "grpcstream.retry.delay": event.delay,
        }
        if resumed:
            attributes[POSITION] = self.received()
        span.add_event("resume" if resumed else "retry", attributes)
        attempt = self._attempt_span
        if attempt is not None:
            attempt.set_attribute("rpc.grpc.status_code", event.code.value[0])
            attempt.set_status(Status(StatusCode.ERROR, cause))

    @override
    def attach_queue(self, queue: SendQueue[Any]) -> None:
        self.queue = queue
        if self._instruments.metrics:
            queue._on_wait = wait_recorder(self._instruments, self.key)

    def drain_started(self) -> None:
        pass  # a server's drain concerns its own calls

    @override
    def half_closed(self) -> None:
        if self._span is not None and not self._half_closed:
            self._half_closed = True
            self._span.add_event("half_close")

    def sent(self) -> int:
        queue = self.queue
        return self._attempts if queue is None else queue.statistics().sent

    def received(self) -> int:
        handle = self._handle
        received = None if handle is None else handle._responses_received()
        return 0 if received is None else received

    def replay_bytes(self) -> int:
        return 0 if self._handle is None else self._handle._replay_size()

    @override
    def finish(self, handle: object) -> None:
        if self._done:
            return
        self._done = True
        if self._attempts == 0:
            return  # never started (its token source failed): there is nothing to report
        instruments = self._instruments
        call = cast("CallHandle", handle)
        code = final_code(call._call)
        received = self.received()
        if call._responses_received() is None and code is grpc.StatusCode.OK:
            received = 1  # the single response of a unary or client-streaming call
        instruments.ended(self, self.sent(), received)
        instruments.client_duration.record(
            time.perf_counter() - self._start, instruments.status_attrs(self.key, code)
        )
        span = self._span
        if span is not None:
            self._end_attempt(code)
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code is not grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
            span.end()
