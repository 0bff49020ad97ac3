"""A tiny TCP proxy whose connections can be cut: a network failure on demand, for the demo."""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; :meth:`cut` drops every connection.

    New connections are accepted again right after a cut, as when a network path comes
    back: a client with a ``RetryPolicy`` reconnects through it.

    Args:
        target_port: the port of the server on 127.0.0.1.
    """

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen on a free port (then ``port`` is set)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        pipes = [
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.wait(pipes)
            self._pipes.difference_update(pipes)
            for end in (writer, upstream_writer):
                end.transport.abort()
                self._writers.discard(end)

    def cut(self) -> None:
        """Abort every open connection, both sides, as a failing network would."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def aclose(self) -> None:
        """Stop listening and cut everything."""
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._pipes:
            await asyncio.wait(list(self._pipes))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
