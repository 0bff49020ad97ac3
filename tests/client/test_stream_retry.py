"""Streams under retry: replaying what was sent, and resuming after what was received.

Faults are real: a killed and restarted server process, connections cut by a TCP proxy,
and servers that abort. Backoffs are recorded by an injected sleep (the ``sleeps`` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

import grpcstream
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import STARTUP, PatientServerProcess, Sleeps
from tests.support.servers import WAIT, Context, dummy_client, raw_server, wait_for
from tests.support.tcp_proxy import tcp_proxy


def _resume(request: Req, last: Reply) -> Req:
    total = request.value.partition(":")[0]  # continue after `last`, without pausing again
    return Req(value=total, seq=last.seq)


@pytest.mark.timeout(2 * STARTUP + 60)  # two cold starts of the server process
async def test_server_stream_resumes_after_sigkill_and_restart(sleeps: Sleeps) -> None:
    process = PatientServerProcess()  # its start is bounded by STARTUP, not WAIT
    target = await process.start()
    sleeps.gate = asyncio.Event()
    events: list[grpcstream.RetryEvent] = []
    policy = grpcstream.RetryPolicy(sleep=sleeps, on_retry=events.append)
    received: list[int] = []
    got_seven = asyncio.Event()
    try:
        async with dummy_client(target) as client:

            async def consume() -> None:
                async with client.server_stream(
                    client.stub.ServerStream, Req(value="20:7"), retry=policy, resume=_resume
                ) as entries:
                    async for entry in entries:
                        received.append(entry.seq)
                        if entry.seq == 7:
                            got_seven.set()

            consumer = asyncio.create_task(consume())
            # Kill only once the client holds entry 7: entries it has not read yet can die
            # with the connection, and then the retry starts over instead of resuming.
            await wait_for(got_seven)
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


async def test_server_stream_resumes_across_three_cut_connections(sleeps: Sleeps) -> None:
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


async def test_server_stream_without_resume_retries_only_before_the_first_message(
    sleeps: Sleeps,
) -> None:
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
        policy = grpcstream.RetryPolicy(sleep=sleeps)
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


async def test_client_stream_is_replayed_while_it_fits_the_buffer(sleeps: Sleeps) -> None:
    attempts: list[int] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        return await _count_then_fail_first(attempts, requests, context)

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=sleeps)
        async with client.client_stream(client.stub.ClientStream, retry=policy) as upload:
            for seq in range(5):
                await upload.send(Req(seq=seq))
            reply = await upload.close_and_receive()
    assert attempts == [1, 2]
    assert reply.value == "0,1,2,3,4"


async def test_client_stream_past_the_buffer_says_why_it_cannot_retry(sleeps: Sleeps) -> None:
    attempts: list[int] = []

    async def handler(requests: AsyncIterator[Req], context: Context) -> Reply:
        return await _count_then_fail_first(attempts, requests, context)

    async with raw_server(client_stream=handler) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=sleeps, replay_buffer_bytes=16)
        with pytest.raises(grpcstream.RetryNotPossibleError, match="replay buffer") as caught:
            async with client.client_stream(client.stub.ClientStream, retry=policy) as upload:
                for seq in range(5):
                    await upload.send(Req(seq=seq, payload=b"x" * 10))
                await upload.close_and_receive()
    assert isinstance(caught.value, grpcstream.Unavailable)  # still the failure's own class
    assert isinstance(caught.value.__cause__, grpcstream.Unavailable)
    assert attempts == [1]


async def test_a_non_retryable_status_crossing_a_write_is_never_retried(sleeps: Sleeps) -> None:
    calls = 0

    async def reject(requests: AsyncIterator[Req], context: Context) -> Reply:
        nonlocal calls
        calls += 1
        async for _ in requests:
            break
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad upload")
        raise AssertionError("unreachable")

    big = b"x" * 60_000  # writes block on flow control when the server stops reading
    policy = grpcstream.RetryPolicy(sleep=sleeps, replay_buffer_bytes=10_000_000)
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


async def test_bidi_is_replayed_before_any_response(sleeps: Sleeps) -> None:
    attempts: list[list[int]] = []

    async def answer_at_half_close(requests: AsyncIterator[Req], context: Context) -> None:
        seqs = [r.seq async for r in requests]
        attempts.append(seqs)
        if len(attempts) == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        await context.write(Reply(value=",".join(map(str, seqs))))

    async with raw_server(bidi=answer_at_half_close) as target, dummy_client(target) as client:
        policy = grpcstream.RetryPolicy(sleep=sleeps)
        async with client.bidi_stream(client.stub.Bidi, retry=policy) as chat:
            for seq in range(3):
                await chat.send(Req(seq=seq))
            await chat.close_send()
            replies = [reply.value async for reply in chat]
    assert attempts == [[0, 1, 2], [0, 1, 2]]
    assert replies == ["0,1,2"]


async def test_bidi_after_responses_needs_resume(sleeps: Sleeps) -> None:
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
        policy = grpcstream.RetryPolicy(sleep=sleeps)
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


async def test_bidi_resume_cannot_retry_for_ever(sleeps: Sleeps) -> None:
    calls = 0

    async def echo_then_fail(requests: AsyncIterator[Req], context: Context) -> None:
        nonlocal calls
        calls += 1
        async for request in requests:
            await context.write(Reply(seq=request.seq))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "flapping")

    policy = grpcstream.RetryPolicy(max_attempts=3, sleep=sleeps)
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
