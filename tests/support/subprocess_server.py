"""A DummyService server in its own process, so tests can kill it for real.

``python -m tests.support.subprocess_server [--port N]`` prints ``PORT <n>`` once serving. Its
``ServerStream`` sends entries ``after_seq+1 .. total`` where the request's ``value`` is
``"<total>:<pause_at>[:<interval_ms>]"``: after entry ``pause_at`` (0: never) it prints
``PAUSED <seq>`` and stops sending (but keeps the stream open) until the test kills the
process; ``interval_ms`` paces the entries. A ``ClientStream``
call with metadata ``mode: stall`` prints ``STALLED`` and never reads; with ``mode:
reading`` it prints ``READING`` after the first request and reads on; with ``mode: hold``
it reads everything, prints ``HOLDING`` and never replies. ``--calm`` ignores every mode
(a restarted server that behaves). ``Bidi`` with ``mode: reading`` prints ``READING`` after
the first request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator

import grpc.aio

from grpcstream_demo import dummy_pb2, dummy_pb2_grpc


class Servicer(dummy_pb2_grpc.DummyServiceServicer):
    async def Unary(
        self, request: dummy_pb2.Req, context: grpc.aio.ServicerContext[object, object]
    ) -> dummy_pb2.Reply:
        return dummy_pb2.Reply(value=request.value, seq=request.seq)

    async def ServerStream(  # type: ignore[override]
        self, request: dummy_pb2.Req, context: grpc.aio.ServicerContext[object, object]
    ) -> None:
        total_text, _, rest = request.value.partition(":")
        pause_text, _, interval_text = rest.partition(":")
        total = int(total_text or "0")
        pause_at = int(pause_text or "0")
        interval = int(interval_text or "0") / 1000
        for seq in range(request.seq + 1, total + 1):
            if interval:
                await asyncio.sleep(interval)  # a paced source, like a log tail
            await context.write(dummy_pb2.Reply(seq=seq))
            if seq == pause_at:
                print(f"PAUSED {seq}", flush=True)
                await asyncio.Event().wait()

    async def ClientStream(
        self,
        request_iterator: AsyncIterator[dummy_pb2.Req],
        context: grpc.aio.ServicerContext[object, object],
    ) -> dummy_pb2.Reply:
        mode = _mode(context)
        if mode == "stall":
            print("STALLED", flush=True)  # never reads: the client's writes back up
            await asyncio.Event().wait()
        count = 0
        async for _ in request_iterator:
            count += 1
            if count == 1 and mode == "reading":
                print("READING", flush=True)
        if mode == "hold":
            print(f"HOLDING {count}", flush=True)
            await asyncio.Event().wait()
        return dummy_pb2.Reply(seq=count)

    async def Bidi(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[dummy_pb2.Req],
        context: grpc.aio.ServicerContext[object, object],
    ) -> None:
        mode = _mode(context)
        first = True
        async for request in request_iterator:
            await context.write(dummy_pb2.Reply(seq=request.seq))
            if first and mode == "reading":
                print("READING", flush=True)
            first = False


CALM = False


def _mode(context: grpc.aio.ServicerContext[object, object]) -> str:
    if CALM:
        return ""
    return dict(context.invocation_metadata() or ()).get("mode", "")  # type: ignore[return-value]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--calm", action="store_true")
    args = parser.parse_args()
    port_arg = args.port
    global CALM
    CALM = args.calm
    server = grpc.aio.server()
    dummy_pb2_grpc.add_DummyServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port(f"127.0.0.1:{port_arg}")
    await server.start()
    print(f"PORT {port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
