"""The chat server: rooms that broadcast every message to everyone in them.

Run: ``python -m examples.chat.server --port 50053``. It prints ``listening on HOST:PORT``
once ready; SIGINT/SIGTERM drains (open chats end with UNAVAILABLE) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
from dataclasses import dataclass, field

import grpcstream
from grpcstream_demo import chat_pb2_grpc
from grpcstream_demo.chat_pb2 import ChatMessage

HISTORY = 50  # messages replayed to someone who joins; below max_queued, so it always fits

logger = logging.getLogger("chat")

Outbox = grpcstream.ServerStream[ChatMessage]


@dataclass
class Room:
    """The members of one room, and its recent messages."""

    name: str
    members: dict[Outbox, str] = field(default_factory=dict)
    history: collections.deque[ChatMessage] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY)
    )
    seq: int = 0

    def join(self, outbox: Outbox, sender: str) -> None:
        """Replay the history to a new member, then let it receive broadcasts."""
        for message in self.history:
            outbox.send_nowait(message)
        self.members[outbox] = sender
        self.broadcast("", f"{sender} joined")

    def leave(self, outbox: Outbox) -> None:
        """Remove a member and tell the others."""
        sender = self.members.pop(outbox, None)
        if sender is not None:
            self.broadcast("", f"{sender} left")

    def broadcast(self, sender: str, text: str) -> None:
        """Number a message and queue it for every member, without waiting for anyone.

        A member whose send queue is full misses the message rather than slowing down the
        whole room; a member that has gone is removed.
        """
        self.seq += 1
        message = ChatMessage(room=self.name, sender=sender, text=text, seq=self.seq)
        self.history.append(message)
        for outbox in list(self.members):
            try:
                outbox.send_nowait(message)
            except grpcstream.WouldBlock:
                logger.warning("%s is too slow; dropped message %d", self.members[outbox], self.seq)
            except grpcstream.GrpcStreamError:
                del self.members[outbox]


class ChatService(grpcstream.StreamServicer, chat_pb2_grpc.ChatServiceServicer):
    """Chat rooms, created on first use."""

    max_queued = 4 * HISTORY  # each member's send queue: room for the replay and a burst

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}

    @grpcstream.bidi_streaming
    async def Chat(
        self,
        requests: grpcstream.RequestStream[ChatMessage],
        stream: grpcstream.ServerStream[ChatMessage],
    ) -> None:
        """The first message joins (``room``, ``sender``); later ones are said in the room.

        The client's half-close leaves the room and ends the call with OK.
        """
        try:
            hello = await requests.receive()
        except StopAsyncIteration:
            return
        if not hello.sender:
            raise grpcstream.InvalidArgument("the first message must name the sender")
        name = hello.room or "lobby"
        room = self.rooms.setdefault(name, Room(name))
        room.join(stream, hello.sender)
        try:
            async for message in requests:
                if message.text:
                    room.broadcast(hello.sender, message.text)
        finally:
            room.leave(stream)


async def main(port: int) -> None:
    """Serve on 127.0.0.1:``port`` (0 picks a free port) until SIGINT/SIGTERM."""
    server = grpcstream.StreamServer(f"127.0.0.1:{port}", grace=2.0)
    server.add(ChatService())
    await server.start()
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    await server.serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50053, help="0 picks a free port")
    logging.basicConfig(level=logging.WARNING, format="server: %(message)s")
    asyncio.run(main(parser.parse_args().port))
