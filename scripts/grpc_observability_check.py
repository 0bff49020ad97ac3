"""Does grpc's own OpenTelemetry plugin (grpcio-observability) record grpc.aio calls?

Not part of the test suite (the plugin is not a dependency). Run it in a scratch
environment: ``pip install grpcio grpcio-observability opentelemetry-sdk`` with matching
grpcio and grpcio-observability versions, then ``python scripts/grpc_observability_check.py``.
It serves a raw grpc.aio server, makes 3 unary calls and one 10-message server stream with
the plugin registered, and prints every data point the SDK's in-memory reader received.
The findings are on the Observability page of the docs.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio
import grpc_observability  # type: ignore[import-not-found]
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

EXPORT_WAIT = 6.0  # the plugin exports from the C-core on a background thread, periodically


def identity(data: bytes) -> bytes:
    return data


async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def stream(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
    for _ in range(10):
        await context.write(request)


async def calls() -> None:
    server = grpc.aio.server()
    handlers = {
        "U": grpc.unary_unary_rpc_method_handler(unary, identity, identity),
        "S": grpc.unary_stream_rpc_method_handler(stream, identity, identity),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Svc", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call_unary = channel.unary_unary("/t.Svc/U", identity, identity)
        call_stream = channel.unary_stream("/t.Svc/S", identity, identity)
        for _ in range(3):
            await call_unary(b"x")
        received = [message async for message in call_stream(b"y")]
        print("stream messages:", len(received))
    await server.stop(None)


def main() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    grpc_observability.OpenTelemetryPlugin(meter_provider=provider).register_global()
    asyncio.run(calls())
    time.sleep(EXPORT_WAIT)
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "count", getattr(point, "value", None))
                    print(metric.name, dict(point.attributes or {}), value)
    print("grpcio", grpc.__version__)


if __name__ == "__main__":
    main()
