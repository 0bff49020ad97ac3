"""grpcstream.Telemetry with the OpenTelemetry SDK's in-memory reader and span exporter.

Real servers on 127.0.0.1, a real SDK (never mocked): each test runs a known scenario and
asserts the exact numbers and spans it must produce.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.dummy_servicer import DummyStreamService
from tests.support.servers import SERVICE, WAIT, serving, wait_until

N = 20  # messages of the server stream in the known run
CUT_AT = 5  # the third attempt fails after this many: the resume position
FAST_RETRY = grpcstream.RetryPolicy(initial_backoff=0.01, max_backoff=0.02, jitter=False)


@dataclass
class Otel:
    telemetry: grpcstream.Telemetry
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
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
        """The sum (counters, gauges) or count (histograms) of points matching attributes."""
        total: int | float = 0
        for attrs, point in self.points(name):
            if all(attrs.get(key.replace("__", ".")) == want for key, want in attributes.items()):
                if isinstance(point, HistogramDataPoint):
                    total += point.count
                else:
                    assert isinstance(point, NumberDataPoint)
                    total += point.value
        return total


@pytest.fixture
def otel() -> Iterator[Otel]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    yield Otel(grpcstream.Telemetry(meter_provider=meters, tracer_provider=tracers), reader, spans)
    meters.shutdown()
    tracers.shutdown()


class FlakyService(DummyStreamService):
    """ServerStream fails twice before sending, then once after CUT_AT messages."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.unary_attempts = 0
        self.metadata: list[dict[str, Any]] = []

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.unary_attempts += 1
        if self.unary_attempts <= 2:
            raise grpcstream.Unavailable("warming up")
        return Reply(value=request.value)

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        self.attempts += 1
        self.metadata.append(dict(stream.invocation_metadata()))
        if self.attempts <= 2:
            raise grpcstream.Unavailable("not ready yet")
        if self.attempts == 3:
            for seq in range(1, CUT_AT + 1):
                await stream.send(Reply(seq=seq))
            raise grpcstream.Unavailable("cut off")
        for seq in range(request.seq + 1, N + 1):
            await stream.send(Reply(seq=seq))


@pytest.fixture
async def flaky(otel: Otel) -> AsyncIterator[tuple[FlakyService, grpcstream.StreamClient[Any]]]:
    service = FlakyService()
    async with (
        serving(service, telemetry=otel.telemetry) as (_, target),
        grpcstream.connect(target) as channel,
        grpcstream.StreamClient(
            channel,
            dummy_pb2_grpc.DummyServiceStub,
            retry=FAST_RETRY,
            telemetry=otel.telemetry,
            timeout=WAIT,
        ) as client,
    ):
        yield service, client


async def run_known(client: grpcstream.StreamClient[Any]) -> list[int]:
    """N messages over 2 retries and 1 resume, then a client stream with 1 blocked sender."""
    stub: dummy_pb2_grpc.DummyServiceAsyncStub = client.stub
    async with client.server_stream(
        stub.ServerStream, Req(), resume=lambda req, last: Req(seq=last.seq)
    ) as replies:
        seqs = [reply.seq async for reply in replies]
    async with client.client_stream(stub.ClientStream, max_queued=1) as upload:
        await upload.send(Req(seq=1))
        await upload.send(Req(seq=2))  # the queue holds 1: this send waits for the writer
        summary = await upload.close_and_receive()
    assert summary.seq == 2
    return seqs


def method(name: str) -> dict[str, str]:
    return {"rpc__system": "grpc", "rpc__service": SERVICE, "rpc__method": name}


async def test_known_run_exact_counts(flaky: tuple[FlakyService, Any], otel: Otel) -> None:
    service, client = flaky
    assert await run_known(client) == list(range(1, N + 1))
    assert service.attempts == 4
    stream, upload = method("ServerStream"), method("ClientStream")
    unavailable = grpc.StatusCode.UNAVAILABLE.name

    assert otel.value("grpcstream.client.retries", **stream) == 2
    assert otel.value("grpcstream.client.retries", grpcstream__retry__cause=unavailable) == 2
    assert otel.value("grpcstream.client.resumes", **stream) == 1
    assert otel.value("grpcstream.client.resumes", grpcstream__retry__cause=unavailable) == 1

    assert otel.value("grpcstream.messages.received", grpcstream__side="client", **stream) == N
    assert otel.value("grpcstream.messages.sent", grpcstream__side="server", **stream) == N
    assert otel.value("grpcstream.messages.sent", grpcstream__side="client", **upload) == 2
    assert otel.value("grpcstream.messages.received", grpcstream__side="server", **upload) == 2
    assert otel.value("grpcstream.messages.received", grpcstream__side="client", **upload) == 1

    assert otel.value("grpcstream.send.wait.duration", grpcstream__side="client", **upload) == 1
    assert otel.value("grpcstream.send.wait.duration", grpcstream__side="server") == 0

    assert otel.value("rpc.client.call.duration", rpc__grpc__status_code=0, **stream) == 1
    assert otel.value("rpc.client.call.duration", rpc__grpc__status_code=0, **upload) == 1
    assert otel.value("rpc.server.call.duration", rpc__grpc__status_code=0, **stream) == 1
    assert otel.value("rpc.server.call.duration", rpc__grpc__status_code=14, **stream) == 3
    assert otel.value("rpc.server.call.duration", rpc__grpc__status_code=0, **upload) == 1

    assert otel.value("grpcstream.streams.active") == 0
    assert otel.value("grpcstream.send_queue.depth") == 0
    assert otel.value("grpcstream.send_queue.blocked_senders") == 0
    assert otel.telemetry.open_streams == 0


async def test_replay_buffer_bytes_of_a_retried_client_stream(
    flaky: tuple[FlakyService, Any], otel: Otel
) -> None:
    _, client = flaky
    messages = [Req(seq=seq, payload=b"x" * 100) for seq in range(3)]
    async with client.client_stream(client.stub.ClientStream) as upload:
        for message in messages:
            await upload.send(message)
        # Written messages are kept for a replay until the response arrives.
        await wait_until(lambda: upload.statistics().sent == len(messages))
        replay = otel.value("grpcstream.client.replay_buffer.size", **method("ClientStream"))
        assert replay == sum(message.ByteSize() for message in messages)
        [(attrs, _)] = otel.points("grpcstream.client.replay_buffer.size")
        assert set(attrs) == {"rpc.system", "rpc.service", "rpc.method", "grpcstream.side"}
        summary = await upload.close_and_receive()
    assert summary.seq == len(messages)
    assert otel.value("grpcstream.client.replay_buffer.size") == 0


async def test_unary_retries_one_span_per_attempt(
    flaky: tuple[FlakyService, Any], otel: Otel
) -> None:
    _, client = flaky
    reply = await client.unary(client.stub.Unary, Req(value="hi"))
    assert reply.value == "hi"
    unary = method("Unary")
    assert otel.value("grpcstream.client.retries", grpcstream__retry__cause="UNAVAILABLE") == 2
    assert otel.value("rpc.client.call.duration", rpc__grpc__status_code=14, **unary) == 2
    assert otel.value("rpc.client.call.duration", rpc__grpc__status_code=0, **unary) == 1
    assert otel.value("rpc.server.call.duration", rpc__grpc__status_code=14, **unary) == 2
    assert otel.value("grpcstream.messages.sent", grpcstream__side="client", **unary) == 3
    assert otel.value("grpcstream.messages.received", grpcstream__side="client", **unary) == 1
    assert otel.value("grpcstream.messages.received", grpcstream__side="server", **unary) == 3
    assert otel.value("grpcstream.messages.sent", grpcstream__side="server", **unary) == 1
    spans = by_name(otel.spans.get_finished_spans(), f"{SERVICE}/Unary")
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(clients) == len(servers) == 3
    assert {parent_id(s) for s in servers} == {span_id(s) for s in clients}
    assert [s.status.is_ok for s in clients] == [False, False, True]


async def test_every_attribute_set_is_bounded(flaky: tuple[FlakyService, Any], otel: Otel) -> None:
    _, client = flaky
    await run_known(client)
    base = {"rpc.system", "rpc.service", "rpc.method"}
    allowed = {
        "rpc.client.call.duration": base | {"rpc.grpc.status_code"},
        "rpc.server.call.duration": base | {"rpc.grpc.status_code"},
        "grpcstream.client.retries": base | {"grpcstream.retry.cause"},
        "grpcstream.client.resumes": base | {"grpcstream.retry.cause"},
        "grpcstream.messages.sent": base | {"grpcstream.side"},
        "grpcstream.messages.received": base | {"grpcstream.side"},
        "grpcstream.streams.active": base | {"grpcstream.side"},
        "grpcstream.send.wait.duration": base | {"grpcstream.side"},
    }
    for name, keys in allowed.items():
        points = otel.points(name)
        assert points, name
        for attrs, _ in points:
            assert set(attrs) == keys, (name, attrs)
            assert attrs["rpc.system"] == "grpc"
            assert attrs["rpc.service"] == SERVICE
            assert attrs["rpc.method"] in {"ServerStream", "ClientStream"}


async def test_queue_depth_and_blocked_sender_while_a_stream_is_stuck(otel: Otel) -> None:
    service = DummyStreamService()
    async with serving(service, telemetry=otel.telemetry) as (_, target):
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(
                channel, dummy_pb2_grpc.DummyServiceStub, telemetry=otel.telemetry
            ) as client,
        ):
            # The client reads nothing: flow control stops the writer, the queue fills up
            # and the handler's next send() waits for room.
            async with client.server_stream(client.stub.ServerStream, Req(value="flood:65536")):
                server = {"grpcstream__side": "server", **method("ServerStream")}

                seen: list[tuple[float, float]] = []

                def blocked() -> bool:
                    # One collection reads both, from the event loop: a consistent state.
                    seen.append(
                        (
                            otel.value("grpcstream.send_queue.depth", **server),
                            otel.value("grpcstream.send_queue.blocked_senders", **server),
                        )
                    )
                    return seen[-1][1] == 1

                await wait_until(blocked)
                # A blocked send() is woken when the queue drains to half (32 of 64), so
                # while the handler waits, more than half of the queue is waiting too.
                depth, _ = seen[-1]
                assert 32 < depth <= 64
                assert otel.value("grpcstream.streams.active", **server) == 1
                assert otel.value("grpcstream.streams.active", grpcstream__side="client") == 1
                for attrs, _ in otel.points("grpcstream.send_queue.depth"):
                    assert set(attrs) == {
                        "rpc.system",
                        "rpc.service",
                        "rpc.method",
                        "grpcstream.side",
                    }
    assert otel.value("grpcstream.send_queue.blocked_senders") == 0


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def parent_id(span: ReadableSpan) -> int:
    assert span.parent is not None
    return span.parent.span_id


async def test_client_and_server_spans_join_one_trace(
    flaky: tuple[FlakyService, Any], otel: Otel
) -> None:
    service, client = flaky
    await run_known(client)
    spans = otel.spans.get_finished_spans()
    name = f"{SERVICE}/ServerStream"
    [call] = [s for s in by_name(spans, name) if s.kind is SpanKind.CLIENT]
    attempts = by_name(spans, f"Attempt.{name}")
    servers = sorted(
        (s for s in by_name(spans, name) if s.kind is SpanKind.SERVER),
        key=lambda s: s.start_time or 0,
    )
    assert len(attempts) == 4
    assert len(servers) == 4
    assert call.context is not None
    trace_id = call.context.trace_id
    # One client span across the attempts, with a link to each attempt.
    assert [link.context.span_id for link in call.links] == [span_id(a) for a in attempts]
    assert [dict(link.attributes or {}) for link in call.links] == [
        {"grpcstream.attempt": n} for n in (1, 2, 3, 4)
    ]
    assert all(parent_id(attempt) == span_id(call) for attempt in attempts)
    # Each server span is the child of its attempt, in the same trace.
    for server, attempt in zip(servers, attempts, strict=True):
        assert server.context is not None
        assert server.context.trace_id == trace_id
        assert parent_id(server) == span_id(attempt)
        assert server.parent is not None
        assert server.parent.is_remote
    assert all("traceparent" in metadata for metadata in service.metadata)

    events = [(event.name, dict(event.attributes or {})) for event in call.events]
    assert [event for event, _ in events] == ["retry", "retry", "resume"]
    assert events[2][1]["grpcstream.resume.position"] == CUT_AT
    assert events[2][1]["grpcstream.retry.cause"] == "UNAVAILABLE"
    assert [attributes["grpcstream.attempt"] for _, attributes in events] == [1, 2, 3]
    assert call.attributes is not None
    assert call.attributes["rpc.grpc.status_code"] == 0
    assert call.status.is_ok
    statuses = [dict(s.attributes or {})["rpc.grpc.status_code"] for s in servers]
    assert statuses == [14, 14, 14, 0]

    upload = f"{SERVICE}/ClientStream"
    [client_upload] = [s for s in by_name(spans, upload) if s.kind is SpanKind.CLIENT]
    [server_upload] = [s for s in by_name(spans, upload) if s.kind is SpanKind.SERVER]
    assert [e.name for e in client_upload.events] == ["half_close"]
    assert [e.name for e in server_upload.events] == ["half_close"]
    # With retries on, the server's parent is the attempt span under the client span.
    [upload_attempt] = by_name(spans, f"Attempt.{upload}")
    assert parent_id(upload_attempt) == span_id(client_upload)
    assert parent_id(server_upload) == span_id(upload_attempt)


async def test_drain_outcomes_finished_and_cut_off(otel: Otel) -> None:
    service = DummyStreamService()
    async with serving(service, telemetry=otel.telemetry, grace=0.5) as (server, target):
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub) as client,
        ):
            stub = client.stub
            async with (
                client.server_stream(stub.ServerStream, Req(value="closing")) as polite,
                client.server_stream(stub.ServerStream, Req(value="hold")) as stubborn,
            ):
                assert (await anext(polite)).value == "hello"
                assert (await anext(stubborn)).value == "hello"
                stopping = asyncio.create_task(server.stop())
                assert (await anext(polite)).value == "bye"
                # It returned by itself (finished), without complete(): so the client is
                # told to resume elsewhere.
                with pytest.raises(grpcstream.Unavailable, match="server draining"):
                    await anext(polite)
                with pytest.raises(grpcstream.RpcError):
                    await anext(stubborn)
                await asyncio.wait_for(stopping, WAIT)
    method_attrs = method("ServerStream")
    assert (
        otel.value(
            "grpcstream.server.drained_streams",
            grpcstream__drain__outcome="finished",
            **method_attrs,
        )
        == 1
    )
    assert (
        otel.value(
            "grpcstream.server.drained_streams",
            grpcstream__drain__outcome="cut_off",
            **method_attrs,
        )
        == 1
    )
    servers = [s for s in otel.spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 2
    assert all("drain" in [e.name for e in s.events] for s in servers)


def telemetry_frame(frame: FrameType) -> bool:
    # grpcstream's telemetry code: every OpenTelemetry call starts there (the SDK itself
    # creates some objects lazily, such as a histogram bucket's first exemplar reservoir).
    name = frame.f_code.co_filename
    return "grpcstream/_otel" in name or "grpcstream/_telemetry" in name


async def test_nothing_is_recorded_per_message(otel: Otel) -> None:
    """grpcstream's telemetry code runs as often for 60 messages as for 5.

    Counted with a profile hook, so the machine's load cannot blur it (a benchmark can).
    Both streams stay below the queue bound: no send() blocks, so none records its wait.
    """
    service = DummyStreamService()
    async with serving(service, telemetry=otel.telemetry) as (_, target):
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(
                channel, dummy_pb2_grpc.DummyServiceStub, telemetry=otel.telemetry
            ) as client,
        ):

            async def telemetry_calls(messages: int) -> int:
                calls = 0

                def count(frame: FrameType, event: str, arg: object) -> None:
                    nonlocal calls
                    if event == "call" and telemetry_frame(frame):
                        calls += 1

                sys.setprofile(count)
                try:
                    async with client.server_stream(
                        client.stub.ServerStream, Req(seq=messages)
                    ) as replies:
                        assert len([reply async for reply in replies]) == messages
                finally:
                    sys.setprofile(None)
                return calls

            await telemetry_calls(5)  # warm-up: first-use caches
            few, many = await telemetry_calls(5), await telemetry_calls(60)
    assert few > 0  # the per-call work was seen
    assert many == few


async def test_without_a_provider_nothing_is_recorded_or_raised() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    telemetry = grpcstream.Telemetry()  # the global providers: no-ops until configured
    service = FlakyService()
    async with serving(service, telemetry=telemetry) as (_, target):
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(
                channel, dummy_pb2_grpc.DummyServiceStub, retry=FAST_RETRY, telemetry=telemetry
            ) as client,
        ):
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
    service = FlakyService()
    async with serving(service, telemetry=traces_only) as (_, target):
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(
                channel, dummy_pb2_grpc.DummyServiceStub, retry=FAST_RETRY, telemetry=metrics_only
            ) as client,
        ):
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
