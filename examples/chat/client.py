"""A chat client that reads and writes at the same time (bidirectional streaming).

Interactive: ``python -m examples.chat.client --name alice``; type lines to say them,
Ctrl-D to leave. Scripted: ``--say TEXT`` (repeatable) sends those lines, and
``--until-from NAME`` leaves once NAME has said something.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpcstream
from grpcstream_demo import chat_pb2_grpc
from grpcstream_demo.chat_pb2 import ChatMessage


def show(message: ChatMessage) -> str:
    """A received message as a line of text."""
    if not message.sender:
        return f"[{message.seq}] * {message.text}"
    return f"[{message.seq}] {message.sender}: {message.text}"


async def stdin_lines() -> asyncio.StreamReader:
    """Standard input as an asyncio stream, so reading it never blocks the event loop."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def chat(target: str, room: str, name: str, say: list[str], until_from: str | None) -> None:
    """Join ``room`` as ``name``; print what is said while sending our own lines."""
    heard_peer = asyncio.Event()
    async with grpcstream.connect(target) as channel:
        client = grpcstream.StreamClient(channel, chat_pb2_grpc.ChatServiceStub)
        async with client.bidi_stream(client.stub.Chat) as stream:

            async def speak() -> None:
                await stream.send(ChatMessage(room=room, sender=name))  # join
                if say or until_from:
                    for text in say:
                        await stream.send(ChatMessage(text=text))
                    if until_from:
                        await heard_peer.wait()
                else:
                    lines = await stdin_lines()
                    while line := await lines.readline():
                        await stream.send(ChatMessage(text=line.decode().rstrip("\n")))
                # Leave: the server ends the call after this half-close.
                await stream.close_send()

            stream.spawn(speak())  # writes run in their own task while this one reads
            async for message in stream:
                print(show(message), flush=True)
                if message.sender and message.sender == until_from:
                    heard_peer.set()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The chat client's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50053")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--name", required=True)
    parser.add_argument("--say", action="append", default=[], help="a line to send")
    parser.add_argument("--until-from", help="leave after this person has spoken")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    """Run one chat session; return the exit code."""
    try:
        async with asyncio.timeout(args.timeout):
            await chat(args.target, args.room, args.name, args.say, args.until_from)
    except grpcstream.RpcError as error:
        print(f"chat ended: {error}", flush=True)
        return 1
    except TimeoutError:
        print("chat ended: timed out", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
