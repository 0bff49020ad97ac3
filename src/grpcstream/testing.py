"""Helpers for testing services built on grpcstream (the only public submodule).

Start your servicers in-process on an ephemeral port and talk to them through a real
channel, exactly as production code does:

```python
from grpcstream.testing import serve

async def test_status() -> None:
    async with serve(LogService()) as running:
        client = running.client(logs_pb2_grpc.LogServiceStub)
        status = await client.unary(client.stub.GetStatus, StatusRequest())
```

With pytest-asyncio, the ``grpcstream_serve`` fixture (registered by the ``grpcstream``
pytest plugin) does the same and cleans up after the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc.aio

from ._client import StreamClient, connect
from ._server import StreamServer

__all__ = ["DEFAULT_TEST_TIMEOUT", "RunningServer", "ServeFactory", "serve"]

StubT = TypeVar("StubT")

DEFAULT_TEST_TIMEOUT = 30.0
"""The deadline of calls made by ``RunningServer.client()`` unless it is given one."""


@dataclass
class RunningServer:
    """An in-process server and one channel connected to it.

    Attributes:
        server: the started ``StreamServer`` (``server.port`` is the bound port).
        target: ``127.0.0.1:<port>``.
        channel: a grpc.aio channel to ``target`` made with :func:`grpcstream.connect`.
    """

    server: StreamServer
    target: str
    channel: grpc.aio.Channel
    _clients: list[StreamClient[Any]] = field(default_factory=list)

    def client(
        self,
        stub_factory: Callable[[grpc.aio.Channel], StubT],
        *,
        timeout: float | None = DEFAULT_TEST_TIMEOUT,
    ) -> StreamClient[StubT]:
        """A ``StreamClient`` on the shared channel; its open streams are cancelled at exit.

        Its default deadline is ``DEFAULT_TEST_TIMEOUT`` (30 s), so a test that waits for
        a message that never comes fails instead of hanging; pass ``timeout=None`` to
        turn it off.
        """
        client = StreamClient(self.channel, stub_factory, timeout=timeout)
        self._clients.append(client)
        return client


@contextlib.asynccontextmanager
async def serve(*servicers: object, **server_options: Any) -> AsyncIterator[RunningServer]:
    """Run ``servicers`` in a ``StreamServer`` on ``127.0.0.1:0`` for the block's duration.

    Args:
        servicers: servicer instances, added with ``StreamServer.add()``.
        server_options: keyword arguments for ``StreamServer`` (``health=True``, limits...).

    Yields:
        A :class:`RunningServer` with a connected channel. On exit every client made with
        ``client()`` is closed, the channel is closed and the server stops without grace.
    """
    server = StreamServer("127.0.0.1:0", **server_options)
    for servicer in servicers:
        server.add(servicer)
    await server.start()
    target = f"127.0.0.1:{server.port}"
    channel = connect(target)
    running = RunningServer(server=server, target=target, channel=channel)
    try:
        yield running
    finally:
        for client in running._clients:
            await client.aclose()
        await channel.close()
        await server.stop(grace=0)


ServeFactory = Callable[..., Awaitable[RunningServer]]
"""The type of the ``grpcstream_serve`` fixture: ``await grpcstream_serve(*servicers, **opts)``."""
