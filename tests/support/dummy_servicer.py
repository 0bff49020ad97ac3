"""A DummyService written with grpcstream's server API, driven by the request's ``value``."""

from __future__ import annotations

import asyncio
import json

import grpc

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req

PRODUCERS = 16
PER_PRODUCER = 1000


class DummyStreamService(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Modes (``Req.value``) select the behaviour a test needs; events record what happened."""

    def __init__(self) -> None:
        self.send_failed = asyncio.Event()
        self.producer_ended = asyncio.Event()
        self.handler_returned = asyncio.Event()
        self.handler_started = asyncio.Event()
        self.calls = 0
        # flood mode (slow-loris tests): handlers running, and those whose queue filled
        self.flood_active = 0
        self.flood_blocked = 0
        self.requests_seen: list[Req] = []

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.calls += 1
        if request.value == "not_found":
            raise grpcstream.NotFound("no such log", trailing_metadata=(("retry-hint", "no"),))
        if request.value == "boom":
            raise ValueError("secret at /srv/app/secrets.py: hunter2")
        if request.value == "metadata":
            return Reply(value=str(dict(context.invocation_metadata()).get("x-tag", "")))
        if request.value.startswith("big:"):
            return Reply(value="x" * int(request.value[4:]))
        if request.value == "stats":
            return Reply(value=json.dumps(self.stats()))
        return Reply(value=request.value, seq=request.seq)

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        self.calls += 1
        if request.value == "producers":
            await self._producers(stream)
        elif request.value == "endless":
            await self._endless(stream)
        elif request.value in ("closing", "closing_complete"):
            await stream.send(Reply(value="hello"))
            await stream.closing.wait()
            await stream.send(Reply(value="bye"))
            if request.value == "closing_complete":
                stream.complete()
        elif request.value.startswith("paced:"):
            await self._paced(request, stream, int(request.value[6:]))
        elif request.value == "spawn_return":
            stream.spawn(self._forever(stream))  # the handler returns at once
        elif request.value == "producer_fails":
            stream.spawn(self._fail_soon(stream))
            await asyncio.Event().wait()  # only the producer's failure ends this
        elif request.value == "abort_raw":
            await stream.grpc_context.abort(grpc.StatusCode.NOT_FOUND, "nope")
        elif request.value == "self_cancel":
            raise asyncio.CancelledError
        elif request.value == "hold":
            await stream.send(Reply(value="hello"))
            await asyncio.Event().wait()  # ignores closing: cancelled when the grace ends
        elif request.value.startswith("big:"):
            await stream.send(Reply(value="x" * int(request.value[4:])))
        elif request.value.startswith("flood:"):
            await self._flood(stream, int(request.value[6:]))
        elif request.value == "fail_after":
            for seq in range(request.seq):
                await stream.send(Reply(seq=seq))
            raise grpcstream.Aborted("stopped on purpose")
        else:
            for seq in range(request.seq):
                await stream.send(Reply(seq=seq))

    async def _forever(self, stream: grpcstream.ServerStream[Reply]) -> None:
        try:
            seq = 0
            while True:
                seq += 1
                await stream.send(Reply(seq=seq))
        finally:
            self.producer_ended.set()

    async def _fail_soon(self, stream: grpcstream.ServerStream[Reply]) -> None:
        await stream.send(Reply(seq=1))
        raise ValueError("producer bug: secret detail")

    async def _producers(self, stream: grpcstream.ServerStream[Reply]) -> None:
        async def produce(producer: int) -> None:
            for seq in range(PER_PRODUCER):
                await stream.send(Reply(producer=producer, seq=seq))

        for producer in range(PRODUCERS):
            stream.spawn(produce(producer))

    def stats(self) -> dict[str, int]:
        """What the ``stats`` mode reports: live asyncio tasks and flood handlers."""
        return {
            "tasks": len(asyncio.all_tasks()),
            "flood_active": self.flood_active,
            "flood_blocked": self.flood_blocked,
        }

    async def _flood(self, stream: grpcstream.ServerStream[Reply], size: int) -> None:
        """Send ``size``-byte messages until the client goes; each a fresh message."""
        payload = "x" * size
        self.flood_active += 1
        blocked = False
        try:
            seq = 0
            while True:
                seq += 1
                await stream.send(Reply(value=payload, seq=seq))
                statistics = stream.statistics()
                if not blocked and statistics.queued >= statistics.max_size:
                    blocked = True  # the queue is full: from now on send() waits
                    self.flood_blocked += 1
        finally:
            self.flood_active -= 1
            if blocked:
                self.flood_blocked -= 1

    async def _paced(
        self, request: Req, stream: grpcstream.ServerStream[Reply], total: int
    ) -> None:
        """Entries after ``request.seq`` up to ``total``, every 10 ms: the resumable shape."""
        for seq in range(request.seq + 1, total + 1):
            if stream.closing.is_set():
                return  # the drain: the client resumes from the last entry it got
            await stream.send(Reply(seq=seq))
            await asyncio.sleep(0.01)  # a paced source, like a log tail
        stream.complete()

    async def _endless(self, stream: grpcstream.ServerStream[Reply]) -> None:
        async def produce() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                self.producer_ended.set()

        stream.spawn(produce())
        self.handler_started.set()
        try:
            seq = 0
            while True:
                seq += 1
                await stream.send(Reply(seq=seq))
        except grpcstream.BrokenStreamError:
            self.send_failed.set()
            raise
        finally:
            self.handler_returned.set()

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
        talk_after_close = False
        async for request in requests:
            self.requests_seen.append(request)
            talk_after_close = talk_after_close or request.value == "talk_after_close"
            await stream.send(Reply(seq=request.seq, value=request.value))
        if talk_after_close:  # keep sending after the half-close until the client is gone
            self.handler_started.set()
            try:
                while True:
                    await stream.send(Reply(value="more"))
            except grpcstream.BrokenStreamError:
                self.send_failed.set()
                raise
            finally:
                self.handler_returned.set()
