"""Deadlines: a call's timeout ends it with DeadlineExceeded wherever the caller waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.client.doubles import BIG, never_reads
from tests.support.servers import WAIT, Context, dummy_client, grpcstream_tasks, raw_server

SHORT = 0.5
"""A deadline that expires quickly but leaves room for the call to start on a busy machine."""


async def _never(*_: object) -> None:
    await asyncio.Event().wait()


async def _never_unary(request: Req, context: Context) -> Reply:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_deadline_expires_during_iteration() -> None:
    async with raw_server(server_stream=_never, bidi=_never) as target:
        async with dummy_client(target) as client:
            async with client.server_stream(
                client.stub.ServerStream, Req(), timeout=SHORT
            ) as replies:
                with pytest.raises(grpcstream.DeadlineExceeded) as caught:
                    async with asyncio.timeout(WAIT):
                        await anext(replies)
            assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        async with dummy_client(target, timeout=SHORT) as client:  # the client default
            with pytest.raises(grpcstream.DeadlineExceeded):
                async with client.bidi_stream(client.stub.Bidi) as chat:
                    await chat.send(Req())
                    async with asyncio.timeout(WAIT):
                        await anext(chat)
    assert grpcstream_tasks() == set()


async def test_deadline_expires_while_send_waits_on_a_full_queue() -> None:
    async with raw_server(client_stream=never_reads) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.DeadlineExceeded):
            async with client.client_stream(
                client.stub.ClientStream, timeout=SHORT, max_queued=2
            ) as upload:
                async with asyncio.timeout(WAIT):
                    while True:
                        await upload.send(Req(payload=BIG))
        assert upload.statistics().waiting_senders == 0
        assert await upload.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert grpcstream_tasks() == set()


async def test_deadline_expires_in_close_and_receive() -> None:
    async def reads_then_hangs(requests: AsyncIterator[Req], context: Context) -> Reply:
        async for _ in requests:
            pass
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with raw_server(client_stream=reads_then_hangs) as target:
        async with dummy_client(target, timeout=SHORT) as client:
            async with client.client_stream(client.stub.ClientStream) as upload:
                await upload.send(Req())
                with pytest.raises(grpcstream.DeadlineExceeded):
                    async with asyncio.timeout(WAIT):
                        await upload.close_and_receive()
            assert await upload.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_unary_deadline() -> None:
    async with raw_server(unary=_never_unary) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.DeadlineExceeded):
            async with asyncio.timeout(WAIT):
                await client.unary(client.stub.Unary, Req(), timeout=SHORT)


async def test_per_call_timeout_none_overrides_the_client_default() -> None:
    release = asyncio.Event()

    async def waits_for_release(request: Req, context: Context) -> None:
        await release.wait()
        await context.write(Reply(seq=1))

    async with raw_server(server_stream=waits_for_release) as target:
        async with dummy_client(target, timeout=SHORT) as client:
            async with (
                client.server_stream(client.stub.ServerStream, Req()) as defaulted,
                client.server_stream(client.stub.ServerStream, Req(), timeout=None) as unbound,
            ):
                # Only once the default deadline has provably expired is the server released.
                with pytest.raises(grpcstream.DeadlineExceeded):
                    async with asyncio.timeout(WAIT):
                        await anext(defaulted)
                release.set()
                async with asyncio.timeout(WAIT):
                    assert [r.seq async for r in unbound] == [1]
            assert await unbound.code() is grpc.StatusCode.OK


@pytest.mark.raw_grpc
async def test_raw_grpc_reports_a_deadline_during_a_blocked_write_as_internal() -> None:
    """Documents raw grpc.aio: the deadline expiring under a blocked write becomes INTERNAL.

    The real status (DEADLINE_EXCEEDED) is lost; grpcstream reports ``DeadlineExceeded``
    (see ``test_deadline_expires_while_send_waits_on_a_full_queue``).
    """
    async with raw_server(client_stream=never_reads) as target:
        async with grpc.aio.insecure_channel(target) as channel:
            call = dummy_pb2_grpc.DummyServiceStub(channel).ClientStream(timeout=SHORT)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(WAIT):
                    while True:
                        await call.write(Req(payload=BIG))
            assert caught.value.code() is grpc.StatusCode.INTERNAL
            assert await call.code() is grpc.StatusCode.INTERNAL
