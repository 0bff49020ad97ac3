"""The known run the telemetry tests measure: retries, a resume, and a blocked sender.

``FlakyService`` fails in a fixed pattern and ``run_known`` drives it, so every count,
span and event the run produces is known in advance.
"""

from __future__ import annotations

from typing import Any

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req

N = 20
"""Messages of the server stream in the known run."""
CUT_AT = 5
"""The third attempt fails after this many messages: the resume position."""
FAST_RETRY = grpcstream.RetryPolicy(initial_backoff=0.01, max_backoff=0.02, jitter=False)


class FlakyService(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Fails on schedule; records the attempts and the metadata each stream received.

    * ``Unary``: UNAVAILABLE twice, then echoes ``value``.
    * ``ServerStream``: UNAVAILABLE twice before sending, then once after ``CUT_AT``
      messages, then sends ``request.seq + 1 .. N`` (the resumed rest).
    * ``ClientStream``: counts the requests; the reply's ``seq`` is that count.
    """

    def __init__(self) -> None:
        self.attempts = 0
        self.unary_attempts = 0
        self.metadata: list[dict[str, Any]] = []

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.unary_attempts += 1
        if self.unary_attempts <= 2:
            raise grpcstream.Unavailable("warming up")
        return Reply(value=request.value)

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        self.attempts += 1
        self.metadata.append(dict(stream.invocation_metadata()))
        if self.attempts <= 2:
            raise grpcstream.Unavailable("not ready yet")
        if self.attempts == 3:
            for seq in range(1, CUT_AT + 1):
                await stream.send(Reply(seq=seq))
            raise grpcstream.Unavailable("cut off")
        for seq in range(request.seq + 1, N + 1):
            await stream.send(Reply(seq=seq))

    @grpcstream.client_streaming
    async def ClientStream(
        self, requests: grpcstream.RequestStream[Req], context: grpcstream.CallContext
    ) -> Reply:
        return Reply(seq=len([request async for request in requests]))


async def run_known(client: grpcstream.StreamClient[Any]) -> list[int]:
    """N messages over 2 retries and 1 resume, then a client stream with 1 blocked sender."""
    stub: dummy_pb2_grpc.DummyServiceAsyncStub = client.stub
    async with client.server_stream(
        stub.ServerStream, Req(), resume=lambda req, last: Req(seq=last.seq)
    ) as replies:
        seqs = [reply.seq async for reply in replies]
    async with client.client_stream(stub.ClientStream, max_queued=1) as upload:
        await upload.send(Req(seq=1))
        await upload.send(Req(seq=2))  # the queue holds 1: this send waits for the writer
        summary = await upload.close_and_receive()
    assert summary.seq == 2
    return seqs
