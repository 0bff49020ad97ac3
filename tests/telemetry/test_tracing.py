"""grpcstream.Telemetry's spans, read back from the OpenTelemetry SDK's in-memory exporter.

One client span per call, one attempt span per try when retries are on, and the server's
span its child across the wire (``traceparent``): the shape docs/observability.md draws.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind

from grpcstream_demo.dummy_pb2 import Req
from tests.support.servers import SERVICE
from tests.telemetry.known_run import CUT_AT, FlakyService, run_known
from tests.telemetry.otel import Otel, by_name, method, parent_id, span_id


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
