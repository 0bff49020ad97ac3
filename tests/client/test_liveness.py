"""Liveness: keepalive notices a stalled connection, and the default is safe against any server."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import Echo, PatientServerProcess
from tests.support.servers import (
    WAIT,
    DummyClient,
    dummy_client,
    grpcstream_tasks,
    raw_server,
    serving,
)
from tests.support.tcp_proxy import tcp_proxy

KEEPALIVE = grpcstream.KeepAlive(time=1.0, timeout=1.0)
# The bound: a stall is noticed within about 1.5 x (time + timeout).
DETECTION_BOUND = 1.5 * (KEEPALIVE.time + KEEPALIVE.timeout)


def _resume(request: Req, last: Reply) -> Req:
    return Req(value=request.value, seq=last.seq)


async def test_a_stalled_connection_is_detected_by_keepalive_then_resumed() -> None:
    server = PatientServerProcess()
    await server.start()
    retries: list[tuple[float, grpcstream.RetryEvent]] = []
    detected = asyncio.Event()

    def on_retry(event: grpcstream.RetryEvent) -> None:
        retries.append((asyncio.get_running_loop().time(), event))
        detected.set()

    policy = grpcstream.RetryPolicy(on_retry=on_retry)
    try:
        async with (
            tcp_proxy(server.port) as proxy,
            grpcstream.connect(f"127.0.0.1:{proxy.port}", keepalive=KEEPALIVE) as channel,
        ):
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
            seqs: list[int] = []
            async with client.server_stream(
                client.stub.ServerStream, Req(value="20:5"), retry=policy, resume=_resume
            ) as entries:
                async for entry in entries:
                    seqs.append(entry.seq)
                    if entry.seq == 5:
                        await server.wait_line("PAUSED 5")
                        loop = asyncio.get_running_loop()
                        proxy.stall()  # nothing is closed: only a ping can tell
                        stalled_at = loop.time()

                        async def unstall() -> None:
                            await asyncio.wait_for(detected.wait(), WAIT)
                            proxy.resume()

                        unstaller = asyncio.create_task(unstall())
            await unstaller
            detected_at, detection = retries[0]
            assert detection.code is grpc.StatusCode.UNAVAILABLE
            assert "ping timeout" in (detection.error.details or "")
            assert detected_at - stalled_at < DETECTION_BOUND
            assert seqs == list(range(1, 21))  # resumed: no loss, no duplicate
    finally:
        await server.kill()


QUIET = 360.0  # 6 minutes: beyond grpc's 5-minute ping allowance on a quiet connection


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(QUIET + 120)
async def test_a_quiet_stream_survives_six_minutes_against_grpc_default_enforcement() -> None:
    """A raw grpc.aio server with grpc's default keepalive enforcement, default client.

    With the old default (pings every 30 s) the server answered the third ping with
    GOAWAY ``too_many_pings`` after about 2 minutes and the pending "bye" was lost.
    """

    async def quiet(request: Req, context: grpc.aio.ServicerContext[Req, Reply]) -> None:
        await context.write(Reply(value="hello"))
        await asyncio.sleep(QUIET)  # the quiet span is what is under test
        await context.write(Reply(value="bye"))

    async with (
        raw_server(server_stream=quiet) as target,  # grpc's default server options
        grpcstream.connect(target) as channel,  # grpcstream's default client options
    ):
        client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
        async with client.server_stream(client.stub.ServerStream, Req()) as replies:
            assert (await anext(replies)).value == "hello"
            bye = await asyncio.wait_for(anext(replies), QUIET + WAIT)
            assert bye.value == "bye"
            assert [reply async for reply in replies] == []


IDLE = 0.5  # idle_timeout in the tests below


async def test_idle_timeout_ends_a_quiet_server_stream_and_resume_continues_it() -> None:
    """The server goes quiet after entry 5; idle_timeout notices, resume picks up at 6."""
    server = PatientServerProcess()
    target = await server.start()
    retries: list[grpcstream.RetryEvent] = []
    try:
        async with grpcstream.connect(target) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
            async with client.server_stream(
                client.stub.ServerStream,
                Req(value="20:5"),  # pauses after 5 (the resumed call starts after it)
                retry=grpcstream.RetryPolicy(on_retry=retries.append),
                resume=_resume,
                idle_timeout=IDLE,
            ) as entries:
                seqs = [entry.seq async for entry in entries]
        assert seqs == list(range(1, 21))
        assert len(retries) == 1
        assert isinstance(retries[0].error, grpcstream.IdleTimeout)
        assert retries[0].code is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.kill()


async def test_idle_timeout_on_a_bidi_stream_is_retried_through_resume() -> None:
    async with serving(Echo()) as (_, target), dummy_client(target) as client:
        retries: list[grpcstream.RetryEvent] = []
        async with client.bidi_stream(
            client.stub.Bidi,
            retry=grpcstream.RetryPolicy(on_retry=retries.append),
            resume=lambda last: [Req(seq=last.seq + 1)],  # the conversation's next step
            idle_timeout=IDLE,
        ) as chat:
            await chat.send(Req(seq=1))
            assert (await chat.receive()).seq == 1
            # Nothing more is sent: the next read idles out, resume() re-opens with seq 2.
            assert (await chat.receive()).seq == 2
            await chat.send(Req(seq=3))  # the send side survived the idle re-open
            assert (await chat.receive()).seq == 3
            await chat.close_send()
        assert [type(event.error) for event in retries] == [grpcstream.IdleTimeout]
        assert client.open_streams == 0
    assert grpcstream_tasks() == set()


async def test_idle_timeout_without_retry_raises_the_typed_error() -> None:
    async with serving(Echo()) as (_, target), dummy_client(target) as client:
        async with client.bidi_stream(client.stub.Bidi, idle_timeout=IDLE) as chat:
            await chat.send(Req(seq=1))
            assert (await chat.receive()).seq == 1
            with pytest.raises(grpcstream.IdleTimeout, match="idle_timeout"):
                await chat.receive()
        assert chat.done()
    assert grpcstream_tasks() == set()


async def test_server_idle_timeout_ends_a_silent_upload_with_unavailable() -> None:
    service = Echo()
    service.idle_timeout = IDLE
    async with serving(service) as (_, target), dummy_client(target) as client:
        with pytest.raises(grpcstream.Unavailable, match="idle_timeout"):
            async with client.client_stream(client.stub.ClientStream, retry=None) as upload:
                await upload.send(Req(seq=1))  # then silence, without a half-close
                code = await asyncio.wait_for(upload.code(), WAIT)
                assert code is grpc.StatusCode.UNAVAILABLE
    assert grpcstream_tasks() == set()


def test_the_keepalive_presets_and_their_enforcement() -> None:
    default, aggressive = grpcstream.KeepAlive(), grpcstream.KeepAlive.aggressive()
    assert (default.time, default.timeout) == (300.0, 20.0)
    assert (aggressive.time, aggressive.timeout) == (30.0, 10.0)
    enforcement = grpcstream.KeepAliveEnforcement()
    assert enforcement.accepts(default)
    assert enforcement.accepts(aggressive)
    options = dict(enforcement.server_options())
    assert options["grpc.http2.ping_timeout_ms"] == options["grpc.keepalive_timeout_ms"]


@pytest.mark.parametrize("kwargs", [{"time": 0}, {"timeout": -1}, {"time": "30"}])
def test_keepalive_rejects_bad_durations(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        grpcstream.KeepAlive(**kwargs)


@pytest.mark.parametrize("bad", [0, -1.0, True, "1"])
async def test_idle_timeout_rejects_bad_values(bad: object, echo_client: DummyClient) -> None:
    client = echo_client
    with pytest.raises(ValueError, match="idle_timeout"):
        client.server_stream(client.stub.ServerStream, Req(), idle_timeout=bad)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="idle_timeout"):
        client.bidi_stream(client.stub.Bidi, idle_timeout=bad)  # type: ignore[call-overload]
    assert client.open_streams == 0
