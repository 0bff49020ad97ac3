"""RetryPolicy and resume, against real faults: killed servers and cut connections."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import tenacity

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import WAIT, Context, ServerProcess, dummy_client, raw_server, wait_until
from tests.support.tcp_proxy import tcp_proxy


class Sleeps:
    """An injected sleep: records each backoff and returns at once (or when released)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), WAIT)


def _failing_unary(
    failures: int,
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
    trailers: tuple[tuple[str, str], ...] = (),
) -> tuple[list[int], object]:
    attempts: list[int] = []

    async def handler(request: Req, context: Context) -> Reply:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            await context.abort(code, f"attempt {len(attempts)} failed", trailers)
        return Reply(value="ok", seq=len(attempts))

    return attempts, handler


async def test_unary_retries_unavailable_with_exponential_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="grpcstream.retry")
    sleeps = Sleeps()
    events: list[grpcstream.RetryEvent] = []
    policy = grpcstream.RetryPolicy(jitter=False, sleep=sleeps, on_retry=events.append)
    attempts, handler = _failing_unary(3)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:  # type: ignore[arg-type]
        reply = await client.unary(client.stub.Unary, Req(), retry=policy)
    assert reply.seq == 4
    assert attempts == [1, 2, 3, 4]
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4])
    assert [(e.attempt, e.code) for e in events] == [
        (n, grpc.StatusCode.UNAVAILABLE) for n in (1, 2, 3)
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert any("attempt 1" in m and "UNAVAILABLE" in m and "0.100" in m for m in messages)


async def test_equal_jitter_stays_between_half_the_cap_and_the_cap() -> None:
    sleeps = Sleeps()
    policy = grpcstream.RetryPolicy(max_attempts=5, sleep=sleeps)
    _, handler = _failing_unary(4)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:  # type: ignore[arg-type]
        await client.unary(client.stub.Unary, Req(), retry=policy)
    caps = [0.1, 0.2, 0.4, 0.8]
    assert len(sleeps.delays) == 4
    assert all(cap / 2 <= d <= cap for d, cap in zip(sleeps.delays, caps, strict=True))


async def test_unary_never_retries_other_codes() -> None:
    sleeps = Sleeps()
    attempts, handler = _failing_unary(1, grpc.StatusCode.NOT_FOUND)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:  # type: ignore[arg-type]
        with pytest.raises(grpcstream.NotFound):
            await client.unary(client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(sleep=sleeps))
    assert attempts == [1]
    assert sleeps.delays == []


async def test_unary_gives_up_after_max_attempts() -> None:
    sleeps = Sleeps()
    attempts, handler = _failing_unary(100)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:  # type: ignore[arg-type]
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(
                client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(max_attempts=3, sleep=sleeps)
            )
    assert attempts == [1, 2, 3]


async def test_deadline_is_the_total_budget_across_attempts() -> None:
    calls = 0

    async def hang(request: Req, context: Context) -> Reply:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    policy = grpcstream.RetryPolicy(
        deadline=0.5,
        retry_on=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}),
    )
    async with raw_server(unary=hang) as target, dummy_client(target, timeout=30.0) as client:
        started = time.monotonic()
        with pytest.raises(grpcstream.DeadlineExceeded):
            await client.unary(client.stub.Unary, Req(), retry=policy)
        elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 1.0  # the budget plus a margin for a loaded machine
    assert calls >= 1


async def test_pushback_trailer_sets_the_delay_and_negative_means_stop() -> None:
    sleeps = Sleeps()
    attempts, handler = _failing_unary(1, trailers=(("grpc-retry-pushback-ms", "250"),))
    async with raw_server(unary=handler) as target, dummy_client(target) as client:  # type: ignore[arg-type]
        await client.unary(client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(sleep=sleeps))
    assert sleeps.delays == [0.25]

    attempts, handler = _failing_unary(1, trailers=(("grpc-retry-pushback-ms", "-1"),))
    async with raw_server(unary=handler) as target, dummy_client(target) as client:  # type: ignore[arg-type]
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(sleep=sleeps))
    assert attempts == [1]


async def test_tenacity_strategies_are_accepted_as_they_are() -> None:
    sleeps = Sleeps()
    policy = grpcstream.RetryPolicy(
        stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_fixed(0.05), sleep=sleeps
    )
    attempts, handler = _failing_unary(5)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:  # type: ignore[arg-type]
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(client.stub.Unary, Req(), retry=policy)
    assert attempts == [1, 2]
    assert sleeps.delays == [0.05]


async def test_no_policy_retries_forever_by_default() -> None:
    policy = grpcstream.RetryPolicy()
    assert policy.max_attempts == 9
    # The documented default patience: 11.35 s to 22.7 s of waiting in all.
    assert policy.patience() == pytest.approx((11.35, 22.7))
    assert grpcstream.RetryPolicy(jitter=False, max_attempts=3).patience() == pytest.approx(
        (0.3, 0.3)
    )
    with pytest.raises(grpcstream.UsageError, match="patience"):
        grpcstream.RetryPolicy(stop=tenacity.stop_after_attempt(2)).patience()
    with pytest.raises(ValueError, match="max_attempts"):
        grpcstream.RetryPolicy(max_attempts=0)


def _resume(request: Req, last: Reply) -> Req:
    total = request.value.partition(":")[0]  # continue after `last`, without pausing again
    return Req(value=total, seq=last.seq)


async def test_server_stream_resumes_after_sigkill_and_restart() -> None:
    process = ServerProcess()
    target = await process.start()
    sleeps = Sleeps()
    sleeps.gate = asyncio.Event()
    events: list[grpcstream.RetryEvent] = []
    policy = grpcstream.RetryPolicy(sleep=sleeps, on_retry=events.append)
    received: list[int] = []
    try:
        async with dummy_client(target) as client:

            async def consume() -> None:
                async with client.server_stream(
                    client.stub.ServerStream, Req(value="20:7"), retry=policy, resume=_resume
                ) as entries:
                    async for entry in entries:
                        received.append(entry.seq)

            consumer = asyncio.create_task(consume())
            await process.wait_line("PAUSED 7")
            await process.kill()
            await process.start()  # same port
            sleeps.gate.set()
            await asyncio.wait_for(consumer, WAIT)
    finally:
        await process.kill()
    assert received == list(range(1, 21))
    assert len(sleeps.delays) >= 1  # it really failed and was resumed
    assert {event.code for event in events} == {grpc.StatusCode.UNAVAILABLE}


async def test_server_stream_resumes_across_three_cut_connections() -> None:
    pause_at = {5, 10, 15}
    paused = asyncio.Queue[int]()

    async def entries(request: Req, context: Context) -> None:
        for seq in range(request.seq + 1, 21):
            await context.write(Reply(seq=seq))
            if seq in pause_at:
                pause_at.discard(seq)
                paused.put_nowait(seq)
                await asyncio.Event().wait()  # until the proxy cuts the connection

    received: list[int] = []
    async with raw_server(server_stream=entries) as target:
        async with tcp_proxy(int(target.rsplit(":", 1)[1])) as proxy:
            sleeps = Sleeps()
            policy = grpcstream.RetryPolicy(sleep=sleeps)
            async with dummy_client(f"127.0.0.1:{proxy.port}") as client:

                async def consume() -> None:
                    async with client.server_stream(
                        client.stub.ServerStream, Req(), retry=policy, resume=_resume
                    ) as stream:
                        async for entry in stream:
                            received.append(entry.seq)

                consumer = asyncio.create_task(consume())
                for _ in range(3):
                    await asyncio.wait_for(paused.get(), WAIT)
                    proxy.cut()
                await asyncio.wait_for(consumer, WAIT)
    assert received == list(range(1, 21))
    assert len(sleeps.delays) >= 3  # at least one resume per cut
    assert proxy.connections >= 4


async def test_server_stream_without_resume_retries_only_before_the_first_message() -> None:
    attempts = 0

    async def flaky(request: Req, context: Context) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        await context.write(Reply(seq=1))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "lost it")

    received: list[int] = []
    async with raw_server(server_stream=flaky) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=Sleeps())
        with pytest.raises(grpcstream.Unavailable, match="lost it"):
            async with client.server_stream(client.stub.ServerStream, Req(), retry=policy) as s:
                async for entry in s:
                    received.append(entry.seq)
    assert attempts == 2
    assert received == [1]  # never a silent restart that would repeat entry 1


async def _count_then_fail_first(
    attempts: list[int], requests: AsyncIterator[Req], context: Context
) -> Reply:
    attempts.append(len(attempts) + 1)
    seqs = [r.seq async for r in requests]
    if len(attempts) == 1:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
    return Reply(seq=len(seqs), value=",".join(map(str, seqs)))


async def test_client_stream_is_replayed_while_it_fits_the_buffer() -> None:
    attempts: list[int] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        return await _count_then_fail_first(attempts, requests, context)

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=Sleeps())
        async with client.client_stream(client.stub.ClientStream, retry=policy) as upload:
            for seq in range(5):
                await upload.send(Req(seq=seq))
            reply = await upload.close_and_receive()
    assert attempts == [1, 2]
    assert reply.value == "0,1,2,3,4"


async def test_client_stream_past_the_buffer_says_why_it_cannot_retry() -> None:
    attempts: list[int] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        return await _count_then_fail_first(attempts, requests, context)

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=Sleeps(), replay_buffer_bytes=16)
        with pytest.raises(grpcstream.RetryNotPossibleError, match="replay buffer") as caught:
            async with client.client_stream(client.stub.ClientStream, retry=policy) as upload:
                for seq in range(5):
                    await upload.send(Req(seq=seq, payload=b"x" * 10))
                await upload.close_and_receive()
    assert isinstance(caught.value, grpcstream.Unavailable)  # still the failure's own class
    assert isinstance(caught.value.__cause__, grpcstream.Unavailable)
    assert attempts == [1]


async def test_grpc_service_config_retries_do_not_multiply_ours() -> None:
    attempts, handler = _failing_unary(100)
    service_config = json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": "grpcstream.demo.testing.v1.DummyService"}],
                    "retryPolicy": {
                        "maxAttempts": 3,
                        "initialBackoff": "0.01s",
                        "maxBackoff": "0.01s",
                        "backoffMultiplier": 1,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )
    policy = grpcstream.RetryPolicy(max_attempts=2, sleep=Sleeps())
    async with raw_server(unary=handler) as target:  # type: ignore[arg-type]
        options = [("grpc.service_config", service_config)]
        async with grpcstream.connect(target, options=options) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
            with pytest.raises(grpcstream.Unavailable):
                await client.unary(client.stub.Unary, Req(), retry=policy)
        assert attempts == [1, 2]  # ours only
        attempts.clear()
        async with grpcstream.connect(target, options=options, grpc_retries=True) as channel:
            client = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub)
            with pytest.raises(grpcstream.Unavailable):
                await client.unary(client.stub.Unary, Req(), retry=None)
        assert attempts == [1, 2, 3]  # the control: grpc's own policy is really active


async def test_bidi_is_replayed_before_any_response() -> None:
    attempts: list[list[int]] = []

    async def answer_at_half_close(requests: AsyncIterator[Req], context: Context) -> None:
        seqs = [r.seq async for r in requests]
        attempts.append(seqs)
        if len(attempts) == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        await context.write(Reply(value=",".join(map(str, seqs))))

    async with raw_server(bidi=answer_at_half_close) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=Sleeps())
        async with client.bidi_stream(client.stub.Bidi, retry=policy) as chat:
            for seq in range(3):
                await chat.send(Req(seq=seq))
            await chat.close_send()
            replies = [reply.value async for reply in chat]
    assert attempts == [[0, 1, 2], [0, 1, 2]]
    assert replies == ["0,1,2"]


async def test_bidi_after_responses_needs_resume() -> None:
    calls = 0

    async def echo_then_fail_once(requests: AsyncIterator[Req], context: Context) -> None:
        nonlocal calls
        calls += 1
        async for request in requests:
            await context.write(Reply(seq=request.seq))
            if calls == 1 and request.seq == 2:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "lost the room")

    def rejoin(last: Reply) -> list[Req]:
        return [Req(value="rejoin", seq=last.seq)]

    async with raw_server(bidi=echo_then_fail_once) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=Sleeps())
        with pytest.raises(grpcstream.Unavailable, match="lost the room"):
            async with client.bidi_stream(client.stub.Bidi, retry=policy) as chat:
                for seq in (1, 2):
                    await chat.send(Req(seq=seq))
                    assert (await anext(chat)).seq == seq
                await anext(chat)  # the failure, after responses: not retried without resume
        calls = 0
        seen: list[int] = []
        async with client.bidi_stream(client.stub.Bidi, retry=policy, resume=rejoin) as chat:
            for seq in (1, 2):
                await chat.send(Req(seq=seq))
                seen.append((await anext(chat)).seq)
            seen.append((await anext(chat)).seq)  # resumed: the rejoin message is echoed
            await chat.send(Req(seq=3))
            seen.append((await anext(chat)).seq)
            await chat.close_send()
            seen.extend([reply.seq async for reply in chat])
    assert calls == 2
    assert seen == [1, 2, 2, 3]


async def test_cancel_during_backoff_stops_the_retries() -> None:
    attempts = 0

    async def fail(request: Req, context: Context) -> None:
        nonlocal attempts
        attempts += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"attempt {attempts}")

    sleeps = Sleeps()
    sleeps.gate = asyncio.Event()
    policy = grpcstream.RetryPolicy(max_attempts=3, sleep=sleeps)
    async with raw_server(server_stream=fail) as target, dummy_client(target) as client:
        async with client.server_stream(client.stub.ServerStream, Req(), retry=policy) as s:
            reader = asyncio.create_task(anext(s))
            await wait_until(lambda: len(sleeps.delays) == 1)  # in the first backoff
            assert s.cancel() is True
            sleeps.gate.set()
            with pytest.raises(grpcstream.Cancelled):
                await asyncio.wait_for(reader, WAIT)
    assert attempts == 1


async def test_bidi_resume_cannot_retry_for_ever() -> None:
    calls = 0

    async def echo_then_fail(requests: AsyncIterator[Req], context: Context) -> None:
        nonlocal calls
        calls += 1
        async for request in requests:
            await context.write(Reply(seq=request.seq))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "flapping")

    policy = grpcstream.RetryPolicy(max_attempts=3, sleep=Sleeps())
    async with raw_server(bidi=echo_then_fail) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.Unavailable, match="flapping"):
            async with client.bidi_stream(
                client.stub.Bidi, retry=policy, resume=lambda last: [Req(seq=last.seq)]
            ) as chat:
                await chat.send(Req(seq=1))
                async with asyncio.timeout(WAIT):
                    async for _ in chat:
                        pass
    assert calls == 3  # max_attempts counts every attempt of a bidi stream


async def test_deadline_is_a_hard_budget_even_with_instant_retries() -> None:
    attempts = 0
    budgets: list[float] = []

    async def hang(request: Req, context: Context) -> Reply:
        nonlocal attempts
        attempts += 1
        remaining = context.time_remaining()
        assert remaining is not None
        budgets.append(remaining)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    policy = grpcstream.RetryPolicy(
        deadline=0.3,
        stop=tenacity.stop_never,
        wait=tenacity.wait_none(),
        retry_on=frozenset({grpc.StatusCode.DEADLINE_EXCEEDED}),
    )
    async with raw_server(unary=hang) as target, dummy_client(target, timeout=30.0) as client:
        started = time.monotonic()
        with pytest.raises(grpcstream.DeadlineExceeded):
            await client.unary(client.stub.Unary, Req(), retry=policy)
        assert time.monotonic() - started < 0.3 + 1.0
    # grpc's timer may fire a hair before our clock says the budget is spent, which can
    # allow one last, tiny attempt; never more.
    assert attempts <= 2
    assert budgets[0] <= 0.35  # the attempt's timeout was the budget, not the call's 30 s


async def test_a_non_retryable_status_crossing_a_write_is_never_retried() -> None:
    calls = 0

    async def reject(requests: AsyncIterator[Req], context: Context) -> Reply:
        nonlocal calls
        calls += 1
        async for _ in requests:
            break
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad upload")
        raise AssertionError("unreachable")

    big = b"x" * 60_000  # writes block on flow control when the server stops reading
    policy = grpcstream.RetryPolicy(sleep=Sleeps(), replay_buffer_bytes=10_000_000)
    async with raw_server(client_stream=reject) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.RpcError) as caught:
            async with asyncio.timeout(WAIT):
                async with client.client_stream(client.stub.ClientStream, retry=policy) as up:
                    for seq in range(100):
                        await up.send(Req(seq=seq, payload=big))
                    await up.close_and_receive()
    # grpc.aio may hide the status behind INTERNAL when it crosses a write; then it is
    # Unknown (never Unavailable, which would be retried), otherwise the real status.
    assert caught.value.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN)
    assert calls == 1
