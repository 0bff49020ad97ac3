"""The handler adapters type-check as overrides of the generated servicer, and only then.

mypy --strict runs with ``warn_unused_ignores``: each ``type: ignore`` below must match
an error mypy really reports, so this file fails type-checking if a wrong handler ever
stops being caught.
"""

from __future__ import annotations

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from grpcstream_demo.logs_pb2 import LogEntry
from tests.support.servers import dummy_client, serving


class WellTypedHandlers(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """One handler per adapter, each with the generated servicer's message types."""

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        return Reply(seq=request.seq)

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.send(Reply(seq=request.seq))

    @grpcstream.client_streaming
    async def ClientStream(
        self, requests: grpcstream.RequestStream[Req], context: grpcstream.CallContext
    ) -> Reply:
        return Reply(seq=len([request async for request in requests]))

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        async for request in requests:
            await stream.send(Reply(seq=request.seq))


class WrongHandlers(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    @grpcstream.server_streaming
    async def ServerStream(  # type: ignore[override]
        self, request: Req, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:  # sends the wrong message type
        await stream.send(LogEntry())

    @grpcstream.unary
    async def Unary(  # type: ignore[override]
        self, request: LogEntry, context: grpcstream.CallContext
    ) -> Reply:  # expects the wrong request type
        return Reply()

    @grpcstream.server_streaming
    async def Bidi(  # type: ignore[override]
        self, request: Req, stream: grpcstream.ServerStream[Reply]
    ) -> None:  # the wrong adapter for a bidi method
        return None


async def test_the_well_typed_servicer_is_a_generated_servicer() -> None:
    assert issubclass(WellTypedHandlers, dummy_pb2_grpc.DummyServiceServicer)
    assert WellTypedHandlers.ServerStream.__name__ == "ServerStream"
    assert WrongHandlers.Unary.__name__ == "Unary"
    # Served, each adapter answers its method with the declared types.
    async with serving(WellTypedHandlers()) as (_, target), dummy_client(target) as client:
        assert (await client.unary(client.stub.Unary, Req(seq=1))).seq == 1
        async with client.server_stream(client.stub.ServerStream, Req(seq=2)) as replies:
            assert [reply.seq async for reply in replies] == [2]
        async with client.client_stream(client.stub.ClientStream) as upload:
            await upload.send(Req())
            assert (await upload.close_and_receive()).seq == 1
        async with client.bidi_stream(client.stub.Bidi) as chat:
            await chat.send(Req(seq=4))
            await chat.close_send()
            assert [reply.seq async for reply in chat] == [4]
