"""What the telemetry tests read back: the OpenTelemetry SDK's in-memory reader and spans."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from tests.support.servers import SERVICE, serving

DummyClient: TypeAlias = "grpcstream.StreamClient[dummy_pb2_grpc.DummyServiceAsyncStub]"


@dataclass
class Otel:
    """A ``grpcstream.Telemetry`` on a real SDK, and where its metrics and spans end up."""

    telemetry: grpcstream.Telemetry
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Every data point of the metric ``name``, with its attributes."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend((dict(p.attributes or {}), p) for p in metric.data.data_points)
        return found

    def value(self, name: str, **attributes: Any) -> int | float:
        """The sum (counters, gauges) or count (histograms) of points matching attributes.

        An attribute's dots are written ``__``: ``rpc__method="Unary"`` matches ``rpc.method``.
        """
        total: int | float = 0
        for attrs, point in self.points(name):
            if all(attrs.get(key.replace("__", ".")) == want for key, want in attributes.items()):
                if isinstance(point, HistogramDataPoint):
                    total += point.count
                else:
                    assert isinstance(point, NumberDataPoint)
                    total += point.value
        return total


def method(name: str) -> dict[str, str]:
    """The attributes (in ``Otel.value`` spelling) naming a DummyService method."""
    return {"rpc__system": "grpc", "rpc__service": SERVICE, "rpc__method": name}


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def parent_id(span: ReadableSpan) -> int:
    assert span.parent is not None
    return span.parent.span_id


@contextlib.asynccontextmanager
async def observed_client(
    service: object,
    telemetry: grpcstream.Telemetry,
    client_telemetry: grpcstream.Telemetry | None = None,
    **client_options: Any,
) -> AsyncIterator[DummyClient]:
    """Serve ``service`` with ``telemetry``; yield a DummyService client on a new channel
    whose telemetry is ``client_telemetry`` (by default the same)."""
    async with (
        serving(service, telemetry=telemetry) as (_, target),
        grpcstream.connect(target) as channel,
        grpcstream.StreamClient(
            channel,
            dummy_pb2_grpc.DummyServiceStub,
            telemetry=client_telemetry or telemetry,
            **client_options,
        ) as client,
    ):
        yield client
