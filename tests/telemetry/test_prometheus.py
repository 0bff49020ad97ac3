"""The Prometheus example (``examples.logs.server --metrics-port``) scraped over HTTP.

A real server process with ``grpcstream.Telemetry`` on the OpenTelemetry SDK and
``opentelemetry-exporter-prometheus``; the test reads ``/metrics`` on 127.0.0.1 like a
Prometheus server would, and checks the stream metrics against what it just did.
"""

from __future__ import annotations

import asyncio
import re

import pytest

import grpcstream
from examples.logs.metrics import scrape, total
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import LogRequest
from tests.support.child_processes import START_TIMEOUT, example_server, read_line, run_module

LIMIT = 50
METRICS = re.compile(r"metrics on (http://127\.0\.0\.1:\d+/metrics)")


async def test_prometheus_endpoint_shows_the_stream_metrics() -> None:
    async with example_server("examples.logs.server", "--metrics-port=0", "--rate=500") as (
        target,
        process,
    ):
        metrics = METRICS.search(await read_line(process))
        assert metrics
        url = metrics.group(1)
        stream_logs = {"rpc_method": "StreamLogs", "grpcstream_side": "server"}
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=30) as client,
        ):
            async with client.server_stream(
                client.stub.StreamLogs, LogRequest(follow=True, limit=LIMIT)
            ) as entries:
                received = [entry.seq async for entry in entries]
            assert len(received) == LIMIT
            async with client.server_stream(
                client.stub.StreamLogs, LogRequest(follow=True)
            ) as follow:
                await anext(follow)
                during = await asyncio.to_thread(scrape, url)
        # The server learns of the cancelled follow stream a moment later: poll its status.
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                after = await asyncio.to_thread(scrape, url)
                if total(after, "grpcstream_streams_active", **stream_logs) == 0:
                    break

    assert total(during, "grpcstream_streams_active", **stream_logs) == 1
    # The open follow stream's queue is reported (its depth is whatever the client left).
    depth = [
        key
        for key in during
        if key.startswith("grpcstream_send_queue_depth{")
        and 'grpcstream_side="server"' in key
        and 'rpc_method="StreamLogs"' in key
    ]
    assert len(depth) == 1, sorted(during)
    assert during[depth[0]] >= 0
    assert total(after, "grpcstream_messages_sent_total", **stream_logs) >= LIMIT + 1
    duration = {"rpc_method": "StreamLogs", "rpc_service": "grpcstream.demo.logs.v1.LogService"}
    ok = total(
        after, "rpc_server_call_duration_seconds_count", rpc_grpc_status_code="0", **duration
    )
    cancelled = total(
        after, "rpc_server_call_duration_seconds_count", rpc_grpc_status_code="1", **duration
    )
    assert (ok, cancelled) == (1, 1)  # the limited stream ended OK; the follow was cancelled
    assert total(after, "rpc_server_call_duration_seconds_sum", **duration) > 0
    assert 'rpc_system="grpc"' in next(iter(k for k in after if k.startswith("rpc_server")))


@pytest.mark.parametrize("name", ["grpcstream_messages_sent_total"])
def test_total_sums_matching_labels(name: str) -> None:
    values = {
        f'{name}{{grpcstream_side="server",rpc_method="A"}}': 2.0,
        f'{name}{{grpcstream_side="client",rpc_method="A"}}': 5.0,
        f'{name}{{grpcstream_side="server",rpc_method="B"}}': 3.0,
    }
    assert total(values, name, grpcstream_side="server") == 5.0
    assert total(values, name, rpc_method="A") == 7.0


@pytest.mark.slow
async def test_demo_shows_live_metrics_from_both_ends() -> None:
    code, text = await run_module(
        "examples.logs.demo", "--seconds=5", "--plain", timeout=START_TIMEOUT + 30
    )
    assert code == 0, text
    panel = re.findall(
        r"^metrics: server: (?:(\d+) msg/s sent, queue depth \(lag\) (\d+), blocked senders (\d+)"
        r"|\(restarting\)) \| dashboard: (\d+) msg/s received, retries (\d+), resumes (\d+)$",
        text,
        re.MULTILINE,
    )
    assert len(panel) >= 3, text
    assert any(int(sent or 0) > 0 for sent, *_ in panel), text  # the server's rate, scraped
    assert any(int(received) > 0 for *_, received, _, _ in panel), text
    # The restart is seen by the client's instruments: the stream resumed at least once.
    last = re.search(r"^last metrics: .* resumes (\d+)$", text, re.MULTILINE)
    assert last, text
    assert int(last.group(1)) >= 1
