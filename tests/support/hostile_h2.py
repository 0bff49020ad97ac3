"""Hostile HTTP/2 peers built on the ``h2`` package: they speak gRPC's framing wrongly on purpose.

``truncating_server()`` answers every call with the given gRPC frames followed by a
truncated one (its length prefix promises more bytes than are sent) and then trailers
with ``grpc-status: 0``. ``send_raw_call()`` is a client that sends arbitrary bytes as a
call's request body and reports what the server answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


def grpc_frame(payload: bytes) -> bytes:
    """One length-prefixed gRPC message (uncompressed)."""
    return struct.pack(">?I", False, len(payload)) + payload


def truncated_frame(payload: bytes, missing: int) -> bytes:
    """A gRPC message whose prefix announces ``len(payload)`` bytes but ``missing`` are cut."""
    assert 0 < missing <= len(payload)
    return grpc_frame(payload)[:-missing]


@dataclass
class TruncatingServer:
    """Answers every call with ``body`` (raw bytes) and an OK status, in one go."""

    body: bytes
    port: int = 0
    calls: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[object]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        self.calls += 1
                        self._answer(conn, event.stream_id)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                writer.write(conn.data_to_send())
                await writer.drain()
        self._writers.discard(writer)
        writer.close()

    def _answer(self, conn: h2.connection.H2Connection, stream_id: int) -> None:
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        conn.send_data(stream_id, self.body)
        conn.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait(list(self._tasks))


@contextlib.asynccontextmanager
async def truncating_server(body: bytes) -> AsyncIterator[str]:
    """A started :class:`TruncatingServer`; yields its target."""
    server = TruncatingServer(body)
    target = await server.start()
    try:
        yield target
    finally:
        await server.close()


@dataclass
class RawAnswer:
    """What a server answered to :func:`send_raw_call`."""

    headers: dict[str, str]
    trailers: dict[str, str]
    body: bytes

    @property
    def grpc_status(self) -> int | None:
        status = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if status is None else int(status)

    @property
    def grpc_message(self) -> str:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))


async def send_raw_call(port: int, path: str, body: bytes, *, timeout: float) -> RawAnswer:
    """Send ``body`` as a call's whole request stream (then END_STREAM); read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(
        stream_id,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    conn.send_data(stream_id, body, end_stream=True)
    writer.write(conn.data_to_send())
    answer = RawAnswer({}, {}, b"")
    try:
        async with asyncio.timeout(timeout):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        answer.headers = dict(event.headers)  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.TrailersReceived):
                        answer.trailers = dict(event.headers)  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        answer.body += event.data
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        return answer
                writer.write(conn.data_to_send())
                await writer.drain()
        return answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
