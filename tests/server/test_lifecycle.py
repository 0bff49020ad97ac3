"""StreamServer lifecycle: SIGTERM drain in a real process, health, reflection, keepalive."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.servers import WAIT, ServerProcess, serving
from tests.support.subprocess_stream_server import PACED_ENTRIES

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OPEN_STREAMS = 10
IDLE_SECONDS = 4.5  # grpc clients ping at most once a second; 3 strikes earn a GOAWAY


class Holds(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` sends "hello", then holds the stream open and idle until cancelled."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.send(Reply(value="hello"))
        await asyncio.Event().wait()


async def _read(
    call: grpc.aio.UnaryStreamCall[Req, Reply] | grpc.aio.StreamStreamCall[Req, Reply],
) -> Reply:
    reply = await call.read()
    assert isinstance(reply, Reply)
    return reply


@pytest.mark.slow  # over 5 s (pytest --durations)
async def test_sigterm_drains_open_streams_then_exits_zero() -> None:
    process = ServerProcess(0, "tests.support.subprocess_stream_server", "goodbye", "--grace", "5")
    target = await process.start()
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = dummy_pb2_grpc.DummyServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert (await watch.read()).status == SERVING
            finishing = [stub.ServerStream(Req()) for _ in range(OPEN_STREAMS)]
            holding = stub.Bidi()  # ignores closing
            for call in finishing:
                assert (await _read(call)).value == "hello"
            assert (await _read(holding)).value == "hello"

            process.process.send_signal(signal.SIGTERM)

            async with asyncio.timeout(WAIT):
                assert (await watch.read()).status == NOT_SERVING
                for call in finishing:  # they saw `closing`, said goodbye, complete(): OK
                    assert (await _read(call)).value == "bye"
                    assert await call.read() is grpc.aio.EOF
                    assert await call.code() is grpc.StatusCode.OK
            assert not holding.done()
            async with grpc.aio.insecure_channel(target) as fresh:  # new RPCs are refused
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await dummy_pb2_grpc.DummyServiceStub(fresh).Unary(Req(), timeout=WAIT)
                assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            async with asyncio.timeout(WAIT):  # the holdout is cancelled when grace ends
                assert await holding.code() is grpc.StatusCode.UNAVAILABLE
                await process.wait_line("STOPPED")
                assert await process.process.wait() == 0
    finally:
        await process.kill()


def _resume_after(request: Req, last: Reply) -> Req:
    return Req(seq=last.seq)


async def test_sigterm_drain_then_restart_the_resumable_client_continues_with_no_loss() -> None:
    """The documented handler shape (return on ``closing``) ends UNAVAILABLE in a drain."""
    process = ServerProcess(0, "tests.support.subprocess_stream_server", "paced", "--grace", "5")
    target = await process.start()
    try:
        async with grpcstream.connect(target) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
            retries: list[grpcstream.RetryEvent] = []
            seqs: list[int] = []
            async with client.server_stream(
                client.stub.ServerStream,
                Req(),
                retry=grpcstream.RetryPolicy(on_retry=retries.append),
                resume=_resume_after,
            ) as entries:
                async for entry in entries:
                    seqs.append(entry.seq)
                    if entry.seq == 50:
                        process.process.send_signal(signal.SIGTERM)
                        await process.wait_line("STOPPED")
                        assert await process.process.wait() == 0
                        await process.start()  # the deploy's new version, same port
            assert seqs == list(range(1, PACED_ENTRIES + 1))
            assert retries
            assert "server draining" in (retries[0].error.details or "")
    finally:
        await process.kill()


async def test_health_check_and_watch_follow_the_drain() -> None:
    async with serving(Echo(), health=True) as (server, target):
        async with grpc.aio.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            service = "grpcstream.demo.testing.v1.DummyService"
            response = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == SERVING
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING
            watch = health.Watch(health_pb2.HealthCheckRequest(service=service))
            assert (await watch.read()).status == SERVING
            stopping = asyncio.create_task(server.stop(grace=1.0))
            async with asyncio.timeout(WAIT):
                assert (await watch.read()).status == NOT_SERVING
                await stopping


async def test_reflection_lists_the_services() -> None:
    async with serving(Echo(), reflection=True) as (_, target):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            response = await call.read()
            await call.done_writing()
            assert isinstance(response, reflection_pb2.ServerReflectionResponse)
            names = {s.name for s in response.list_services_response.service}
            assert "grpcstream.demo.testing.v1.DummyService" in names
            call.cancel()


async def _idle_stream_survives(target: str, keepalive: grpcstream.KeepAlive, wait: float) -> bool:
    """Hold a stream idle through keepalive pings for up to ``wait`` s; True if still open.

    A stream that is closed returns as soon as that happens; only the survivor waits.
    """
    async with grpcstream.connect(target, keepalive=keepalive) as channel:
        holding = dummy_pb2_grpc.DummyServiceStub(channel).ServerStream(Req())
        assert (await _read(holding)).value == "hello"
        reader = asyncio.create_task(holding.read())
        await asyncio.wait((reader,), timeout=wait)
        survived = not reader.done()
        holding.cancel()
        await asyncio.wait((reader,))
        return survived


@pytest.mark.slow  # over 5 s (pytest --durations)
async def test_keepalive_presets_agree_on_a_long_idle_stream() -> None:
    """Fast pings that grpc's default enforcement answers with GOAWAY are accepted."""
    client_keepalive = grpcstream.KeepAlive(time=0.05, timeout=5.0)
    enforcement = grpcstream.KeepAliveEnforcement(min_ping_interval=0.05)
    assert enforcement.accepts(client_keepalive)
    holds = Holds()  # type: ignore[abstract]
    async with serving(holds, keepalive=enforcement) as (_, target):
        # Proving that nothing happens takes a span of time: several ping intervals.
        assert await _idle_stream_survives(target, client_keepalive, IDLE_SECONDS)
    async with serving(holds, keepalive=None) as (_, target):  # the control
        assert not await _idle_stream_survives(target, client_keepalive, WAIT)


@pytest.mark.parametrize(
    ("option", "blocked_module", "extra"),
    [
        ("health", "grpc_health.v1.health", "grpcstream[health]"),
        ("reflection", "grpc_reflection.v1alpha", "grpcstream[reflection]"),
    ],
)
def test_missing_extra_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, option: str, blocked_module: str, extra: str
) -> None:
    # A None entry in sys.modules makes the import fail as if the package were missing.
    monkeypatch.setitem(sys.modules, blocked_module, None)
    with pytest.raises(grpcstream.UsageError, match=re.escape(extra)):
        if option == "health":
            grpcstream.StreamServer("127.0.0.1:0", health=True)
        else:
            grpcstream.StreamServer("127.0.0.1:0", reflection=True)
