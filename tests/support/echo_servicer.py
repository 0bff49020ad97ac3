"""``Echo``: DummyService answering each pattern the plain way, for tests that need no more."""

from __future__ import annotations

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req


class Echo(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Every DummyService method, answering what it was asked.

    * ``Unary`` echoes the request's ``value`` and ``seq``;
    * ``ServerStream`` sends ``seq`` 0 .. ``request.seq - 1``;
    * ``ClientStream`` answers ``seq`` = how many requests came, ``value`` = the first
      five seqs joined with commas;
    * ``Bidi`` echoes every request (``seq`` and ``value``) as it arrives.

    ``calls`` counts the handlers that ran; ``requests_seen`` holds every streamed request.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.requests_seen: list[Req] = []

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.calls += 1
        return Reply(value=request.value, seq=request.seq)

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        self.calls += 1
        for seq in range(request.seq):
            await stream.send(Reply(seq=seq))

    @grpcstream.client_streaming
    async def ClientStream(
        self, requests: grpcstream.RequestStream[Req], context: grpcstream.CallContext
    ) -> Reply:
        self.calls += 1
        seqs = []
        async for request in requests:
            self.requests_seen.append(request)
            seqs.append(request.seq)
        return Reply(seq=len(seqs), value=",".join(map(str, seqs[:5])))

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        self.calls += 1
        async for request in requests:
            self.requests_seen.append(request)
            await stream.send(Reply(seq=request.seq, value=request.value))
