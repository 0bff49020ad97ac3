"""The guard for grpcstream's grpc.aio boundary (``grpcstream._grpc_compat``).

``_grpc_compat`` reads private grpc attributes and recognises grpc's status wordings.
Each test here pins one of them against the installed grpcio, on real calls, so that a
grpcio release that moves or rewords one fails here, by name, instead of grpcstream
falling back silently.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from grpcstream import DeadlineExceeded, Unavailable, Unknown
from grpcstream._grpc_compat import (
    CONNECT_FAILED,
    CORE_INTERNAL,
    EOF,
    HIDDEN_BROKEN_STREAM,
    STREAM_BROKEN_ERRORS,
    TLS_CONNECT_HINT,
    context_code,
    from_aio,
    method_name,
    status_now,
    translate,
)
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.servers import WAIT, Context, raw_server

pytestmark = pytest.mark.raw_grpc

BIG = Req(value="x" * 1_000_000)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _never_reads(requests: AsyncIterator[Req], context: Context) -> None:
    await asyncio.sleep(WAIT)


async def _echo_one(request: Req, context: Context) -> Reply:
    return Reply(value=request.value)


def test_the_cython_batch_error_class_still_exists() -> None:
    """A server write to a departed client raises cygrpc.ExecuteBatchError."""
    from grpc._cython import cygrpc  # type: ignore[attr-defined]

    assert (cygrpc.ExecuteBatchError,) == STREAM_BROKEN_ERRORS
    assert issubclass(cygrpc.ExecuteBatchError, BaseException)


def test_grpc_aio_still_hides_failed_writes_behind_core_internal() -> None:
    """grpc.aio's write path stores cygrpc.InternalError through set_internal_error()."""
    from grpc._cython import cygrpc  # type: ignore[attr-defined]

    assert issubclass(cygrpc.InternalError, BaseException)
    assert hasattr(cygrpc._AioCall, "set_internal_error")
    assert "_status" in dir(cygrpc._AioCall)


async def test_a_write_blocked_past_the_deadline_reports_internal_error_from_core() -> None:
    async with (
        raw_server(bidi=_never_reads) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        call = dummy_pb2_grpc.DummyServiceStub(channel).Bidi(timeout=0.5)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async with asyncio.timeout(WAIT):
                for _ in range(64):  # flow control stops the writes after a few MB
                    await call.write(BIG)
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert raised.value.details() == CORE_INTERNAL
    # At the deadline, translate() reports it as what it is.
    assert isinstance(from_aio(raised.value, call=call), DeadlineExceeded)


def test_core_internal_away_from_the_deadline_is_an_honest_unknown() -> None:
    error = translate(grpc.StatusCode.INTERNAL, CORE_INTERNAL, None)
    assert type(error) is Unknown
    assert error.details == HIDDEN_BROKEN_STREAM


async def test_status_now_reads_a_finished_call_status_synchronously() -> None:
    async with (
        raw_server(unary=_echo_one) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        call = dummy_pb2_grpc.DummyServiceStub(channel).Unary(Req(value="hi"), timeout=WAIT)
        assert status_now(call) is None  # nothing yet: the call has just started
        assert (await call).value == "hi"
        status = status_now(call)
    assert status is not None
    assert status[0] is grpc.StatusCode.OK


async def test_a_refused_connection_is_worded_failed_to_connect_to_all_addresses() -> None:
    target = f"127.0.0.1:{_closed_port()}"
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await dummy_pb2_grpc.DummyServiceStub(channel).Unary(Req(), timeout=WAIT)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    details = raised.value.details() or ""
    assert details.startswith(CONNECT_FAILED), details
    hinted = from_aio(raised.value, tls=True)
    assert isinstance(hinted, Unavailable)
    assert hinted.details.endswith(TLS_CONNECT_HINT)


async def test_method_name_reads_the_multicallables_private_method() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        stub = dummy_pb2_grpc.DummyServiceStub(channel)
        names = [method_name(m) for m in (stub.Unary, stub.ServerStream, stub.Bidi)]
    service = "/grpcstream.demo.testing.v1.DummyService"
    assert names == [f"{service}/Unary", f"{service}/ServerStream", f"{service}/Bidi"]
    assert method_name(print) == repr(print)  # not a multicallable: named by repr()


def test_eof_is_grpc_aio_eof() -> None:
    assert EOF is grpc.aio.EOF


async def test_context_code_reads_the_status_a_handler_set() -> None:
    seen: list[grpc.StatusCode] = []

    async def sets_not_found(request: Req, context: Context) -> Reply:
        seen.append(context_code(context, grpc.StatusCode.OK))
        context.set_code(grpc.StatusCode.NOT_FOUND)
        seen.append(context_code(context, grpc.StatusCode.OK))
        return Reply()

    async with (
        raw_server(unary=sets_not_found) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await dummy_pb2_grpc.DummyServiceStub(channel).Unary(Req(), timeout=WAIT)
    assert seen == [grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND]
