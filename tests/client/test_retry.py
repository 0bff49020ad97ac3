"""RetryPolicy: backoff, attempts, codes, pushback and the overall deadline, on real servers.

Backoffs are recorded by an injected sleep (the ``sleeps`` fixture), so no test waits them out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import grpc
import pytest
import tenacity

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import Sleeps
from tests.support.servers import WAIT, Context, UnaryHandler, dummy_client, raw_server, wait_until


def _failing_unary(
    failures: int,
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
    trailers: tuple[tuple[str, str], ...] = (),
) -> tuple[list[int], UnaryHandler]:
    attempts: list[int] = []

    async def handler(request: Req, context: Context) -> Reply:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            await context.abort(code, f"attempt {len(attempts)} failed", trailers)
        return Reply(value="ok", seq=len(attempts))

    return attempts, handler


async def test_unary_retries_unavailable_with_exponential_backoff(
    caplog: pytest.LogCaptureFixture, sleeps: Sleeps
) -> None:
    caplog.set_level(logging.INFO, logger="grpcstream.retry")
    events: list[grpcstream.RetryEvent] = []
    policy = grpcstream.RetryPolicy(jitter=False, sleep=sleeps, on_retry=events.append)
    attempts, handler = _failing_unary(3)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:
        reply = await client.unary(client.stub.Unary, Req(), retry=policy)
    assert reply.seq == 4
    assert attempts == [1, 2, 3, 4]
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4])
    assert [(e.attempt, e.code) for e in events] == [
        (n, grpc.StatusCode.UNAVAILABLE) for n in (1, 2, 3)
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert any("attempt 1" in m and "UNAVAILABLE" in m and "0.100" in m for m in messages)


async def test_equal_jitter_stays_between_half_the_cap_and_the_cap(sleeps: Sleeps) -> None:
    policy = grpcstream.RetryPolicy(max_attempts=5, sleep=sleeps)
    _, handler = _failing_unary(4)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:
        await client.unary(client.stub.Unary, Req(), retry=policy)
    caps = [0.1, 0.2, 0.4, 0.8]
    assert len(sleeps.delays) == 4
    assert all(cap / 2 <= d <= cap for d, cap in zip(sleeps.delays, caps, strict=True))


async def test_unary_never_retries_other_codes(sleeps: Sleeps) -> None:
    attempts, handler = _failing_unary(1, grpc.StatusCode.NOT_FOUND)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.NotFound):
            await client.unary(client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(sleep=sleeps))
    assert attempts == [1]
    assert sleeps.delays == []


async def test_unary_gives_up_after_max_attempts(sleeps: Sleeps) -> None:
    attempts, handler = _failing_unary(100)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(
                client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(max_attempts=3, sleep=sleeps)
            )
    assert attempts == [1, 2, 3]


BUDGET = 2.0
"""RetryPolicy(deadline=) in the budget test: room for two quick failures on a loaded machine."""
ROUNDING = 0.05
"""How much more than the client's timeout a server's time_remaining() can show (~9 ms seen)."""


async def test_deadline_is_the_total_budget_across_attempts() -> None:
    """Two quick failures, then a hang: the third attempt gets only what is left.

    The backoffs (0.1 s and 0.2 s, no jitter) are really slept, so they spend the budget
    too. When the third attempt's deadline (the end of the budget) passes, nothing is left
    for a fourth.
    """
    budgets: list[float] = []
    events: list[grpcstream.RetryEvent] = []

    async def fail_twice_then_hang(request: Req, context: Context) -> Reply:
        remaining = context.time_remaining()
        assert remaining is not None
        budgets.append(remaining)
        if len(budgets) <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"attempt {len(budgets)} failed")
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    policy = grpcstream.RetryPolicy(
        deadline=BUDGET,
        jitter=False,
        retry_on=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}),
        on_retry=events.append,
    )
    async with (
        raw_server(unary=fail_twice_then_hang) as target,
        dummy_client(target, timeout=30.0) as client,
    ):
        started = time.monotonic()
        with pytest.raises(grpcstream.DeadlineExceeded):
            await client.unary(client.stub.Unary, Req(), retry=policy)
        elapsed = time.monotonic() - started
    assert len(budgets) == 3
    assert [(event.attempt, event.code) for event in events] == [
        (1, grpc.StatusCode.UNAVAILABLE),
        (2, grpc.StatusCode.UNAVAILABLE),
    ]
    # The first attempt's timeout is the budget, not the 30 s.
    assert budgets[0] <= BUDGET + ROUNDING
    # The third attempt started after both backoffs had been slept: at most what was left.
    assert budgets[2] <= BUDGET - (0.1 + 0.2) + ROUNDING
    # It ends with the budget, not with the client's 30 s; when exactly is up to a loaded
    # machine's timers (2.7 s late was seen), so the bound is loose.
    assert elapsed < BUDGET + WAIT


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


async def test_pushback_trailer_sets_the_delay_and_negative_means_stop(sleeps: Sleeps) -> None:
    attempts, handler = _failing_unary(1, trailers=(("grpc-retry-pushback-ms", "250"),))
    async with raw_server(unary=handler) as target, dummy_client(target) as client:
        await client.unary(client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(sleep=sleeps))
    assert sleeps.delays == [0.25]

    attempts, handler = _failing_unary(1, trailers=(("grpc-retry-pushback-ms", "-1"),))
    async with raw_server(unary=handler) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(client.stub.Unary, Req(), retry=grpcstream.RetryPolicy(sleep=sleeps))
    assert attempts == [1]


async def test_tenacity_strategies_are_accepted_as_they_are(sleeps: Sleeps) -> None:
    policy = grpcstream.RetryPolicy(
        stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_fixed(0.05), sleep=sleeps
    )
    attempts, handler = _failing_unary(5)
    async with raw_server(unary=handler) as target, dummy_client(target) as client:
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


async def test_grpc_service_config_retries_do_not_multiply_ours(sleeps: Sleeps) -> None:
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
    policy = grpcstream.RetryPolicy(max_attempts=2, sleep=sleeps)
    async with raw_server(unary=handler) as target:
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


async def test_cancel_during_backoff_stops_the_retries(sleeps: Sleeps) -> None:
    attempts = 0

    async def fail(request: Req, context: Context) -> None:
        nonlocal attempts
        attempts += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"attempt {attempts}")

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
