"""grpc.testing.TestService written with grpcstream's public API (the interop server).

It serves the official gRPC interop cases (``doc/interop-test-descriptions.md`` in
grpc/grpc) to any client: grpc-js, grpc-go, grpc-java, raw grpc.aio. Every pattern shows
up: unary calls with echoed metadata and requested statuses, a server stream, a client
stream, a full-duplex and a half-duplex conversation.

Run: ``python -m examples.interop.server --port 50051``; Ctrl-C (or SIGTERM) drains and
exits 0. ``tests/interop/`` runs the interop matrix against it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable

import grpcstream
from grpcstream_interop import test_pb2_grpc
from grpcstream_interop.empty_pb2 import Empty
from grpcstream_interop.messages_pb2 import (
    EchoStatus,
    Payload,
    ResponseParameters,
    SimpleRequest,
    SimpleResponse,
    StreamingInputCallRequest,
    StreamingInputCallResponse,
    StreamingOutputCallRequest,
    StreamingOutputCallResponse,
)

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def payload(size: int) -> Payload:
    """A payload of ``size`` zero bytes, as the interop cases ask for."""
    return Payload(body=bytes(size))


async def echo_metadata(context: grpcstream.CallContext) -> grpcstream.MetadataArg:
    """Send the echo-initial header back now; return the trailers to echo with the status."""
    received = context.invocation_metadata()
    initial = tuple((key, value) for key, value in received if key == ECHO_INITIAL)
    if initial:
        await context.send_initial_metadata(initial)
    trailing = tuple((key, value) for key, value in received if key == ECHO_TRAILING)
    context.set_trailing_metadata(trailing)
    return trailing


def requested_status(status: EchoStatus, trailing: grpcstream.MetadataArg) -> None:
    """Raise the status the client asked for (``response_status``), if it is not OK."""
    if status.code != 0:
        raise grpcstream.status_error(status.code, status.message, trailing)


class TestService(grpcstream.StreamServicer, test_pb2_grpc.TestServiceServicer):
    """Every TestService method the interop cases use; UnimplementedCall stays unimplemented."""

    @grpcstream.unary
    async def EmptyCall(self, request: Empty, context: grpcstream.CallContext) -> Empty:
        """empty_unary: an empty response."""
        return Empty()

    @grpcstream.unary
    async def UnaryCall(
        self, request: SimpleRequest, context: grpcstream.CallContext
    ) -> SimpleResponse:
        """large_unary, custom_metadata, status_code_and_message, special_status_message."""
        trailing = await self.echo_metadata(context)
        self.requested_status(request.response_status, trailing)
        return SimpleResponse(payload=self.payload(request.response_size))

    @grpcstream.unary
    async def CacheableUnaryCall(
        self, request: SimpleRequest, context: grpcstream.CallContext
    ) -> SimpleResponse:
        """Like UnaryCall, without the echo (no case here needs a caching proxy)."""
        return SimpleResponse(payload=self.payload(request.response_size))

    @grpcstream.server_streaming
    async def StreamingOutputCall(
        self,
        request: StreamingOutputCallRequest,
        stream: grpcstream.ServerStream[StreamingOutputCallResponse],
    ) -> None:
        """server_streaming: one response per ``response_parameters`` entry."""
        trailing = await self.echo_metadata(stream)
        await self.respond(request.response_parameters, stream)
        self.requested_status(request.response_status, trailing)

    @grpcstream.client_streaming
    async def StreamingInputCall(
        self,
        requests: grpcstream.RequestStream[StreamingInputCallRequest],
        context: grpcstream.CallContext,
    ) -> StreamingInputCallResponse:
        """client_streaming: the total payload size of everything the client sent."""
        total = 0
        async for request in requests:
            total += len(request.payload.body)
        return StreamingInputCallResponse(aggregated_payload_size=self.aggregate(total))

    @grpcstream.bidi_streaming
    async def FullDuplexCall(
        self,
        requests: grpcstream.RequestStream[StreamingOutputCallRequest],
        stream: grpcstream.ServerStream[StreamingOutputCallResponse],
    ) -> None:
        """ping_pong, empty_stream, cancel_after_first_response, timeout_on_sleeping_server.

        Each request is answered as it arrives; a request with ``response_status`` ends
        the call with that status.
        """
        trailing = await self.echo_metadata(stream)
        async for request in requests:
            self.requested_status(request.response_status, trailing)
            await self.respond(request.response_parameters, stream)

    @grpcstream.bidi_streaming
    async def HalfDuplexCall(
        self,
        requests: grpcstream.RequestStream[StreamingOutputCallRequest],
        stream: grpcstream.ServerStream[StreamingOutputCallResponse],
    ) -> None:
        """Buffer every request until the client half-closes, then answer them in order."""
        buffered = [request async for request in requests]
        for request in buffered:
            await self.respond(request.response_parameters, stream)

    # -- what a faulty variant overrides (tests/interop's negative controls) ---------------

    def payload(self, size: int) -> Payload:
        """The payload of ``size`` bytes to answer with."""
        return payload(size)

    async def echo_metadata(self, context: grpcstream.CallContext) -> grpcstream.MetadataArg:
        """Echo the custom_metadata headers (see the module function)."""
        return await echo_metadata(context)

    def requested_status(self, status: EchoStatus, trailing: grpcstream.MetadataArg) -> None:
        """Raise the status the client asked for (see the module function)."""
        requested_status(status, trailing)

    def aggregate(self, total: int) -> int:
        """The aggregated size to report for ``total`` received payload bytes."""
        return total

    async def respond(
        self,
        parameters: Iterable[ResponseParameters],
        stream: grpcstream.ServerStream[StreamingOutputCallResponse],
    ) -> None:
        """Send one response per entry of ``parameters``, after its ``interval_us``."""
        for entry in parameters:
            if entry.interval_us:
                await asyncio.sleep(entry.interval_us / 1e6)
            await stream.send(StreamingOutputCallResponse(payload=self.payload(entry.size)))


async def main(port: int) -> None:
    """Serve TestService on 127.0.0.1:``port`` (0 picks a free port) until SIGINT/SIGTERM."""
    server = grpcstream.StreamServer(f"127.0.0.1:{port}")
    # The generated stubs mark UnimplementedCall abstract; it answers UNIMPLEMENTED.
    server.add(TestService())  # type: ignore[abstract]
    await server.start()
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    await server.serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    asyncio.run(main(parser.parse_args().port))
