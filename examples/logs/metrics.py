"""Metrics for the log demo: a Prometheus endpoint on the server, a live panel in the viewer.

Server side (``python -m examples.logs.server --metrics-port 9464``):
``prometheus_telemetry()`` builds a ``grpcstream.Telemetry`` on an OpenTelemetry SDK
``MeterProvider`` whose ``PrometheusMetricReader`` is served over HTTP on 127.0.0.1, so
``curl http://127.0.0.1:9464/metrics`` shows the stream metrics.

Viewer side (``make demo``): ``MetricsPanel`` reads the same instruments from both
ends, the dashboard's own client ``Telemetry`` (an in-memory reader) and the server's
``/metrics``, and renders one line: messages per second, send-queue depth (the server's
lag: entries produced but not yet on the wire), blocked senders, retries and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from dataclasses import dataclass

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import grpcstream

SCRAPE_TIMEOUT = 2.0


def prometheus_telemetry(port: int) -> tuple[grpcstream.Telemetry, int]:
    """A ``Telemetry`` whose metrics are served at ``http://127.0.0.1:PORT/metrics``.

    Args:
        port: the HTTP port; 0 picks a free one.

    Returns:
        The telemetry to pass to ``StreamServer(..., telemetry=...)`` and the bound port.
    """
    reader = PrometheusMetricReader()  # registers itself with prometheus_client's REGISTRY
    provider = MeterProvider(metric_readers=[reader])
    httpd, _ = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    return grpcstream.Telemetry(meter_provider=provider), int(httpd.server_port)


def scrape(url: str) -> dict[str, float]:
    """Fetch a Prometheus text page; return ``name{labels}`` -> value (blocking)."""
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def total(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        value
        for key, value in values.items()
        if key.startswith(name + "{") and all(label in key for label in wanted)
    )


@dataclass
class Sample:
    """One reading of the panel's numbers."""

    at: float
    received: float = 0.0  # by the dashboard (client side)
    retries: float = 0.0
    resumes: float = 0.0
    server_sent: float | None = None  # None: the server's endpoint did not answer
    queue_depth: float = 0.0
    blocked: float = 0.0


class MetricsPanel:
    """The dashboard's metrics line, from its own ``Telemetry`` and the server's endpoint.

    Args:
        server_metrics: the server's ``/metrics`` URL, or ``None`` for client numbers only.
    """

    def __init__(self, server_metrics: str | None) -> None:
        self._reader = InMemoryMetricReader()
        self._provider = MeterProvider(metric_readers=[self._reader])
        self.telemetry = grpcstream.Telemetry(meter_provider=self._provider, traces=False)
        self._url = server_metrics
        self._last: Sample | None = None
        self.text = "metrics: waiting for the first sample"
        self.samples = 0

    def _client_values(self) -> dict[str, float]:
        values: dict[str, float] = {}
        data = self._reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        if isinstance(point, NumberDataPoint):
                            values[metric.name] = values.get(metric.name, 0.0) + point.value
        return values

    async def sample(self) -> Sample:
        """Read both ends now."""
        client = self._client_values()
        now = Sample(
            at=time.monotonic(),
            received=client.get("grpcstream.messages.received", 0.0),
            retries=client.get("grpcstream.client.retries", 0.0),
            resumes=client.get("grpcstream.client.resumes", 0.0),
        )
        if self._url is not None:
            try:
                server = await asyncio.to_thread(scrape, self._url)
            except OSError:
                return now  # restarting: the endpoint is down for a moment
            side = {"grpcstream_side": "server"}
            now.server_sent = total(server, "grpcstream_messages_sent_total", **side)
            now.queue_depth = total(server, "grpcstream_send_queue_depth", **side)
            now.blocked = total(server, "grpcstream_send_queue_blocked_senders", **side)
        return now

    def update(self, now: Sample) -> str:
        """Render ``now`` against the previous sample (rates need two)."""
        last, self._last = self._last, now
        self.samples += 1
        elapsed = (now.at - last.at) if last else 0.0
        rate = (now.received - last.received) / elapsed if last and elapsed > 0 else 0.0
        server = "server: (restarting)"
        if now.server_sent is not None:
            sent_rate = 0.0
            if last and last.server_sent is not None and elapsed > 0:
                sent_rate = max(0.0, now.server_sent - last.server_sent) / elapsed
            server = (
                f"server: {sent_rate:.0f} msg/s sent, queue depth (lag) {now.queue_depth:.0f},"
                f" blocked senders {now.blocked:.0f}"
            )
        self.text = (
            f"metrics: {server} | dashboard: {rate:.0f} msg/s received,"
            f" retries {now.retries:.0f}, resumes {now.resumes:.0f}"
        )
        return self.text

    async def run(self, stop: asyncio.Event, *, live: bool, every: float = 1.0) -> None:
        """Sample every ``every`` seconds until ``stop``; print each line unless ``live``."""
        while not stop.is_set():
            line = self.update(await self.sample())
            if not live:
                print(line, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def shutdown(self) -> None:
        """Release the SDK provider."""
        self._provider.shutdown()
