"""Observability: Telemetry on a server and a client, read back from the OpenTelemetry SDK."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import grpcstream
from docs.snippets.server import LogService
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest


async def main() -> None:
    # --8<-- [start:setup]
    # The application owns the SDK: here in-memory, in production an exporter
    # (Prometheus, OTLP...). grpcstream only needs the providers.
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    telemetry = grpcstream.Telemetry(meter_provider=meters, tracer_provider=tracers)

    server = grpcstream.StreamServer("127.0.0.1:0", telemetry=telemetry)
    server.add(LogService())
    await server.start()
    async with grpcstream.connect(f"127.0.0.1:{server.port}") as channel:
        logs = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, telemetry=telemetry)
        request = LogRequest(service="api", after_seq=90)
        async with logs.server_stream(logs.stub.StreamLogs, request) as entries:
            received = [entry.seq async for entry in entries]
    # --8<-- [end:setup]
    await server.stop(0)
    print("received:", len(received))

    # --8<-- [start:read]
    data = reader.get_metrics_data()
    assert data is not None
    sent = {}
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        if metric.name == "grpcstream.messages.sent":
            for point in metric.data.data_points:
                assert isinstance(point, NumberDataPoint)
                sent[str((point.attributes or {})["grpcstream.side"])] = point.value
    print("messages sent:", dict(sorted(sent.items())))
    for span in sorted(spans.get_finished_spans(), key=lambda span: span.kind.name):
        print(f"{span.kind.name.lower()} span: {span.name}")
    # --8<-- [end:read]

    # --8<-- [start:broadcast]
    log = grpcstream.Broadcast(LogEntry, max_entries=1000)
    telemetry.observe_broadcast(log, name="logs")  # the name is its one attribute
    # --8<-- [end:broadcast]
    for seq in range(1, 4):
        log.publish(LogEntry(seq=seq))
    data = reader.get_metrics_data()
    assert data is not None
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        if metric.name == "grpcstream.broadcast.entries":
            for point in metric.data.data_points:
                assert isinstance(point, NumberDataPoint)
                print("broadcast entries:", dict(point.attributes or {}), point.value)
    meters.shutdown()
    tracers.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
