"""The Echo service, served by grpcstream. Run: python echo_server.py [address]"""

from __future__ import annotations

import asyncio
import sys

import echo_pb2_grpc
from echo_pb2 import Ping, Pong

import grpcstream


class Echo(grpcstream.StreamServicer, echo_pb2_grpc.EchoServicer):
    @grpcstream.unary
    async def Say(self, request: Ping, context: grpcstream.CallContext) -> Pong:
        return Pong(text=request.text, seq=1)

    @grpcstream.server_streaming
    async def Repeat(self, request: Ping, stream: grpcstream.ServerStream[Pong]) -> None:
        for seq in range(1, request.count + 1):
            await stream.send(Pong(text=request.text, seq=seq))  # safe from any task

    @grpcstream.client_streaming
    async def Collect(
        self, requests: grpcstream.RequestStream[Ping], context: grpcstream.CallContext
    ) -> Pong:
        texts = [ping.text async for ping in requests]  # ends at the client's half-close
        return Pong(text=" ".join(texts), seq=len(texts))

    @grpcstream.bidi_streaming
    async def Chat(
        self, requests: grpcstream.RequestStream[Ping], stream: grpcstream.ServerStream[Pong]
    ) -> None:
        seq = 0
        async for ping in requests:
            seq += 1
            await stream.send(Pong(text=ping.text.upper(), seq=seq))


async def main(address: str = "127.0.0.1:50051") -> None:
    server = grpcstream.StreamServer(address)
    server.add(Echo())  # finds add_EchoServicer_to_server itself
    await server.start()
    print(f"serving on 127.0.0.1:{server.port}", flush=True)
    await server.serve()  # until Ctrl-C or SIGTERM, then drains gracefully


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
