"""A StreamServer in its own process, for tests that send it real signals or measure it.

``python -m tests.support.subprocess_stream_server SERVICER [--port N] [--grace S]`` serves
one of the servicers below (``goodbye``, ``paced`` or ``flood``) with health and
reflection, prints ``PORT <n>`` once serving and ``STOPPED`` after the drain, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req

PACED_ENTRIES = 300
"""How many entries ``PacedCounter`` sends in all (one every 10 ms)."""
FLOOD_MESSAGE_BYTES = 4096
"""The size of each message ``Flood`` sends."""


class GoodbyeOrHold(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Two handlers that meet a drain differently.

    ``ServerStream`` sends "hello", waits for ``closing``, sends "bye" and calls
    ``complete()``. ``Bidi`` sends "hello" and then ignores ``closing``: only the end of
    the grace period ends it. ``Unary`` echoes (to show new calls are refused).
    """

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        return Reply(value=request.value)

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.send(Reply(value="hello"))
        await stream.closing.wait()
        await stream.send(Reply(value="bye"))
        stream.complete()

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        await stream.send(Reply(value="hello"))
        await asyncio.Event().wait()


class PacedCounter(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream``: entries ``request.seq + 1`` .. ``PACED_ENTRIES``, one every 10 ms.

    The resumable handler shape: it returns when ``closing`` is set (the client resumes
    after the last entry it got) and calls ``complete()`` once it sent the last entry.
    """

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        for seq in range(request.seq + 1, PACED_ENTRIES + 1):
            if stream.closing.is_set():
                return
            await stream.send(Reply(seq=seq))
            await asyncio.sleep(0.01)  # a paced source, like a log tail
        stream.complete()


class Flood(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """``ServerStream`` sends fresh ``FLOOD_MESSAGE_BYTES``-byte messages until the client goes.

    ``Unary`` answers with JSON counters: ``tasks`` (live asyncio tasks in this process),
    ``flood_active`` (ServerStream handlers running) and ``flood_blocked`` (those whose
    send queue is full, so that their ``send()`` waits).
    """

    def __init__(self) -> None:
        self.active = 0
        self.blocked = 0

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        counters = {
            "tasks": len(asyncio.all_tasks()),
            "flood_active": self.active,
            "flood_blocked": self.blocked,
        }
        return Reply(value=json.dumps(counters))

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        payload = "x" * FLOOD_MESSAGE_BYTES
        self.active += 1
        blocked = False
        try:
            seq = 0
            while True:
                seq += 1
                await stream.send(Reply(value=payload, seq=seq))
                statistics = stream.statistics()
                if not blocked and statistics.queued >= statistics.max_size:
                    blocked = True
                    self.blocked += 1
        finally:
            self.active -= 1
            if blocked:
                self.blocked -= 1


SERVICERS = {"goodbye": GoodbyeOrHold, "paced": PacedCounter, "flood": Flood}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("servicer", choices=sorted(SERVICERS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--grace", type=float, default=2.0)
    args = parser.parse_args()
    server = grpcstream.StreamServer(
        f"127.0.0.1:{args.port}", grace=args.grace, health=True, reflection=True
    )
    server.add(SERVICERS[args.servicer]())
    await server.start()
    print(f"PORT {server.port}", flush=True)
    await server.serve()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
