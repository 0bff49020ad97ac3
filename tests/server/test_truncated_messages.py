"""A peer that ends a stream in the middle of a length-prefixed message (the ``h2`` package).

These tests pin what grpc core does today, because grpcstream cannot see it: the C-core
buffers the partial message and, when the stream ends, discards it without a trace. No
byte, flag or status of it reaches Python (grpc.aio hands out complete messages only, and
the final status is the peer's OK). See docs/pitfalls.md ("A truncated final message")
and grpc/grpc#30391 for the server side. If a grpc release starts reporting it, these
tests fail and the documentation must change with them.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

import grpcstream
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.hostile_h2 import grpc_frame, send_raw_call, truncated_frame, truncating_server
from tests.support.servers import SERVICE, dummy_client, serving

WHOLE = grpc_frame(Reply(seq=1).SerializeToString())
CUT = truncated_frame(Reply(seq=2, value="the end").SerializeToString(), missing=3)


async def test_client_a_server_stream_ends_ok_without_its_truncated_last_message() -> None:
    async with truncating_server(WHOLE + CUT) as target, dummy_client(target) as client:
        async with client.server_stream(client.stub.ServerStream, Req(), timeout=5) as replies:
            assert [reply.seq async for reply in replies] == [1]  # seq 2 is silently gone
            assert await replies.code() is grpc.StatusCode.OK


async def test_client_a_unary_call_with_a_truncated_response_waits_for_its_deadline() -> None:
    """A whole response, then a cut one: grpc core waits for the rest until the deadline."""
    async with truncating_server(WHOLE + CUT) as target, dummy_client(target) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(grpcstream.DeadlineExceeded):
            await client.unary(client.stub.Unary, Req(), timeout=0.5)
        assert loop.time() - started >= 0.5  # only the deadline ended it


async def test_client_a_unary_call_whose_only_response_is_cut_raises_internal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """grpc core reports OK with no message; grpcstream refuses to call that a response."""
    async with truncating_server(CUT) as target, dummy_client(target) as client:
        with pytest.raises(grpcstream.Internal, match="could not be deserialized"):
            await client.unary(client.stub.Unary, Req(), timeout=5)
    assert "Exception deserializing message" in caplog.text  # grpc.aio's own log line


@pytest.mark.parametrize("method", ["ClientStream", "Bidi"])
async def test_server_a_truncated_last_request_is_dropped_and_the_call_ends_ok(
    method: str,
) -> None:
    service = Echo()
    body = grpc_frame(Req(seq=1).SerializeToString())
    body += truncated_frame(Req(seq=2, value="the end").SerializeToString(), missing=3)
    async with serving(service) as (server, _):
        answer = await send_raw_call(server.port, f"/{SERVICE}/{method}", body, timeout=5)
    assert answer.grpc_status == 0  # OK
    assert [request.seq for request in service.requests_seen] == [1]  # seq 2 never arrived
