"""grpcstream.Telemetry's metrics, read back from the OpenTelemetry SDK's in-memory reader.

Real servers on 127.0.0.1, a real SDK (never mocked): each test runs a known scenario and
asserts the exact numbers it must produce.
"""

from __future__ import annotations

import asyncio
import sys
from types import FrameType
from typing import Any

import grpc
import pytest
from opentelemetry.trace import SpanKind

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import SERVICE, WAIT, serving, wait_until
from tests.telemetry.known_run import FlakyService, N, run_known
from tests.telemetry.otel import Otel, method, observed_client


class Flood(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """ServerStream sends 64 KiB replies until the client goes away."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        payload = "x" * 65536
        seq = 0
        while True:
            seq += 1
            await stream.send(Reply(value=payload, seq=seq))


class Counter(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """ServerStream sends ``request.seq`` replies, numbered from 0, and returns."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        for seq in range(request.seq):
            await stream.send(Reply(seq=seq))


class DrainOutcomes(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Two handlers that meet a drain differently; each sends ``hello`` first.

    * ``ServerStream`` finishes: it sends ``bye`` when the server starts closing, and
      returns (without ``complete()``).
    * ``Bidi`` holds: it ignores the drain and is cut off when the grace period ends.
    """

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.send(Reply(value="hello"))
        await stream.closing.wait()
        await stream.send(Reply(value="bye"))

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        await stream.send(Reply(value="hello"))
        await asyncio.Event().wait()


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
    flood = Flood()  # type: ignore[abstract]  # ServerStream only
    async with observed_client(flood, otel.telemetry) as client:
        # The client reads nothing: flow control stops the writer, the queue fills up
        # and the handler's next send() waits for room.
        async with client.server_stream(client.stub.ServerStream, Req()):
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


async def test_drain_outcomes_finished_and_cut_off(otel: Otel) -> None:
    service = DrainOutcomes()  # type: ignore[abstract]  # ServerStream and Bidi only
    async with serving(service, telemetry=otel.telemetry, grace=0.5) as (server, target):
        async with (
            grpcstream.connect(target) as channel,
            grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub) as client,
        ):
            stub = client.stub
            async with (
                client.server_stream(stub.ServerStream, Req()) as polite,
                client.bidi_stream(stub.Bidi) as stubborn,
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

    def drained(outcome: str, name: str) -> int | float:
        return otel.value(
            "grpcstream.server.drained_streams", grpcstream__drain__outcome=outcome, **method(name)
        )

    assert (drained("finished", "ServerStream"), drained("cut_off", "ServerStream")) == (1, 0)
    assert (drained("finished", "Bidi"), drained("cut_off", "Bidi")) == (0, 1)
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
    counter = Counter()  # type: ignore[abstract]  # ServerStream only
    async with observed_client(counter, otel.telemetry) as client:

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
