"""One call of each kind to the Echo service. Run: python echo_client.py [target]"""

from __future__ import annotations

import asyncio
import sys

from echo_pb2 import Ping
from echo_pb2_grpc import EchoStub

import grpcstream


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        echo = grpcstream.StreamClient(channel, EchoStub, timeout=10.0)

        # Unary: one request, one response.
        pong = await echo.unary(echo.stub.Say, Ping(text="hello"))
        print("say:", pong.text)

        # Server streaming: one request, many responses.
        async with echo.server_stream(echo.stub.Repeat, Ping(text="hi", count=10)) as pongs:
            async for pong in pongs:  # typed Pong
                if pong.seq == 3:
                    break  # leaving the block cancels the RPC
        print("repeat stopped at:", pong.seq)

        # Client streaming: many requests, one response.
        async with echo.client_stream(echo.stub.Collect) as collect:
            for word in ("one", "two", "three"):
                await collect.send(Ping(text=word))  # may wait: backpressure
            total = await collect.close_and_receive()  # half-close, then the response
        print("collected:", total.text)

        # Bidirectional: both sides send whenever they like.
        async with echo.bidi_stream(echo.stub.Chat) as chat:
            for word in ("a", "b"):
                await chat.send(Ping(text=word))
            await chat.close_send()
            async for pong in chat:
                print("chat:", pong.seq, pong.text)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
