"""A TCP proxy on 127.0.0.1 that a test can use to cut or stall every connection for real."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to a target.

    ``cut()`` drops all live connections. ``stall()`` stops forwarding in both directions
    without closing anything (a peer behind a dead NAT, or a frozen host): only keepalive
    pings or timeouts can notice it. ``resume()`` forwards again; connections accepted
    while stalled are stalled too.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self.bytes_up = 0  # client -> target
        self.bytes_down = 0  # target -> client
        self.refusing = False  # True: new connections are closed at once (target "down")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        """True between ``stall()`` and ``resume()``."""
        return not self._flowing.is_set()

    def stall(self) -> None:
        """Stop forwarding bytes (connections stay open; nothing is closed or reset)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward bytes again."""
        self._flowing.set()

    async def start(self) -> str:
        """Listen on an ephemeral port; return the proxy's target string."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refusing:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pipes = {
            asyncio.create_task(_pipe(reader, up_writer, self._count_up, self._flowing)),
            asyncio.create_task(_pipe(up_reader, writer, self._count_down, self._flowing)),
        }
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.wait(pipes)
            self._tasks.difference_update(pipes)
            for w in (writer, up_writer):
                self._writers.discard(w)
                _abort(w)

    def _count_up(self, size: int) -> None:
        self.bytes_up += size

    def _count_down(self, size: int) -> None:
        self.bytes_down += size

    def cut(self) -> None:
        """Reset every open connection (both sides see the TCP connection die)."""
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()

    async def close(self) -> None:
        """Stop listening and cut everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait(list(self._tasks))


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    count: Callable[[int], None],
    flowing: asyncio.Event,
) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while True:
            await flowing.wait()  # stalled: stop reading too, so TCP windows fill up
            data = await reader.read(65536)
            if not data:
                return
            if not flowing.is_set():
                await flowing.wait()  # a stall that began mid-read holds this chunk back
            count(len(data))
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def tcp_proxy(target_port: int) -> AsyncIterator[TcpProxy]:
    """A started ``TcpProxy``, closed at the end."""
    proxy = TcpProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
