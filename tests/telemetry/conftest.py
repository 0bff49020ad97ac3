"""Fixtures of the telemetry tests: a Telemetry on a real SDK, and the known run's client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import grpcstream
from tests.support.servers import WAIT
from tests.telemetry.known_run import FAST_RETRY, FlakyService
from tests.telemetry.otel import Otel, observed_client


@pytest.fixture
def otel() -> Iterator[Otel]:
    """A Telemetry whose meter and tracer providers record in memory."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    yield Otel(grpcstream.Telemetry(meter_provider=meters, tracer_provider=tracers), reader, spans)
    meters.shutdown()
    tracers.shutdown()


@pytest.fixture
async def flaky(otel: Otel) -> AsyncIterator[tuple[FlakyService, grpcstream.StreamClient[Any]]]:
    """A FlakyService served and called with ``otel``'s telemetry on both ends."""
    service = FlakyService()  # type: ignore[abstract]  # no Bidi
    async with observed_client(service, otel.telemetry, retry=FAST_RETRY, timeout=WAIT) as client:
        yield service, client
