"""How grpcstream.Telemetry is configured: no SDK, metrics or traces off, bad arguments."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import grpcstream
from tests.telemetry.known_run import FAST_RETRY, FlakyService, N, run_known
from tests.telemetry.otel import Otel, observed_client


async def test_without_a_provider_nothing_is_recorded_or_raised() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    telemetry = grpcstream.Telemetry()  # the global providers: no-ops until configured
    service = FlakyService()  # type: ignore[abstract]  # no Bidi
    async with observed_client(service, telemetry, retry=FAST_RETRY) as client:
        assert await run_known(client) == list(range(1, N + 1))
    # No trace context was sent (the no-op tracer's spans are invalid) ...
    assert not any("traceparent" in metadata for metadata in service.metadata)
    # ... and every call was let go.
    assert telemetry.open_streams == 0


async def test_metrics_or_traces_can_be_turned_off() -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    traces_only = grpcstream.Telemetry(
        meter_provider=meters, tracer_provider=tracers, metrics=False
    )
    metrics_only = grpcstream.Telemetry(
        meter_provider=meters, tracer_provider=tracers, traces=False
    )
    service = FlakyService()  # type: ignore[abstract]  # no Bidi
    async with observed_client(service, traces_only, metrics_only, retry=FAST_RETRY) as client:
        assert await run_known(client) == list(range(1, N + 1))
    recorded = Otel(traces_only, reader, spans)
    # The server (traces only) recorded spans and no metric; the client the reverse.
    assert recorded.value("rpc.server.call.duration") == 0
    assert recorded.value("grpcstream.messages.sent", grpcstream__side="server") == 0
    assert recorded.value("rpc.client.call.duration") == 2
    assert recorded.value("grpcstream.client.retries") == 2
    kinds = {span.kind for span in spans.get_finished_spans()}
    assert kinds == {SpanKind.SERVER}
    # The client sent no trace context, so every server span started its own trace.
    assert not any("traceparent" in metadata for metadata in service.metadata)
    meters.shutdown()
    tracers.shutdown()


def test_telemetry_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="telemetry"):
        grpcstream.StreamServer(telemetry="otel")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meter_provider"):
        grpcstream.Telemetry(meter_provider="prometheus")  # type: ignore[arg-type]
