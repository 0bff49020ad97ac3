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
pytest plugin) does the same and cleans up after the test. It works in both
``asyncio_mode = "auto"`` and ``"strict"``; in strict mode the test itself needs
``@pytest.mark.asyncio``, as every async test does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, TypeVar

import grpc.aio
from typing_extensions import Unpack

from ._auth import BearerAuth
from ._client import StreamClient
from ._client_channel import connect
from ._client_settings import ClientOptions
from ._options import ChannelOption, Compression, KeepAliveEnforcement
from ._server import StreamServer
from ._telemetry import Telemetry
from ._tls import ClientTLS, ServerTLS

__all__ = [
    "DEFAULT_TEST_TIMEOUT",
    "RunningServer",
    "ServeFactory",
    "ServerOptions",
    "serve",
]

StubT = TypeVar("StubT")

DEFAULT_TEST_TIMEOUT = 30.0
"""The deadline of calls made by ``RunningServer.client()`` unless it is given one."""


class ServerOptions(TypedDict, total=False):
    """The ``StreamServer`` keyword arguments that ``serve()`` passes on.

    Every keyword of ``StreamServer`` except ``address`` (always ``127.0.0.1:0``) and
    ``tls`` (an explicit parameter of ``serve()``, paired with ``client_tls``). See
    [`StreamServer`][grpcstream.StreamServer] for what each one does.
    """

    grace: float
    health: bool
    reflection: bool
    keepalive: KeepAliveEnforcement | None
    max_send_message_bytes: int | None
    max_receive_message_bytes: int | None
    max_concurrent_streams: int | None
    max_concurrent_rpcs: int | None
    options: Sequence[ChannelOption]
    interceptors: Sequence[grpc.aio.ServerInterceptor]
    auth: BearerAuth | None
    max_metadata_bytes: int | None
    compression: Compression | None
    telemetry: Telemetry | None


@dataclass
class RunningServer:
    """An in-process server and one channel connected to it.

    Attributes:
        server: the started ``StreamServer`` (``server.port`` is the bound port).
        target: ``127.0.0.1:<port>``.
        channel: a grpc.aio channel to ``target`` made with
            [`grpcstream.connect()`][grpcstream.connect], encrypted with ``client_tls``
            when ``serve()`` was given one.
    """

    server: StreamServer
    target: str
    channel: grpc.aio.Channel
    _clients: list[StreamClient[Any]] = field(default_factory=list)
    _needs_client_tls: bool = False

    def client(
        self,
        stub_factory: Callable[[grpc.aio.Channel], StubT],
        *,
        timeout: float | None = DEFAULT_TEST_TIMEOUT,
        **options: Unpack[ClientOptions],
    ) -> StreamClient[StubT]:
        """A ``StreamClient`` on the shared channel; its open streams are cancelled at exit.

        The options are those of [`StreamClient`][grpcstream.StreamClient], with one
        different default: calls have a deadline of ``DEFAULT_TEST_TIMEOUT`` (30 s), so a
        test that waits for a message that never comes fails instead of hanging.

        Args:
            stub_factory: the generated stub class (``logs_pb2_grpc.LogServiceStub``).
            timeout: the default deadline of every call, in seconds; ``None`` turns it off.
            **options: ``metadata``, ``max_queued``, ``retry``, ``auth`` (a
                ``BearerToken``, for a server started with ``auth=BearerAuth(...)``),
                ``compression`` and ``telemetry``, as ``StreamClient`` takes them.

        Returns:
            A ``StreamClient``; ``serve()`` closes it on exit, cancelling its open streams.

        Raises:
            ValueError: as ``StreamClient`` does (a bad ``timeout``, ``max_queued`` or
                metadata key), or the server has ``tls`` but ``serve()`` got no
                ``client_tls``, so the shared channel cannot reach it.
            TypeError: as ``StreamClient`` does (bad metadata, ``auth``, ``retry`` or
                ``telemetry``).
        """
        if self._needs_client_tls:
            raise ValueError(
                "this server only accepts TLS: pass client_tls=ClientTLS(ca=..., "
                "server_name=...) to serve(), or connect to running.target yourself"
            )
        client = StreamClient(self.channel, stub_factory, timeout=timeout, **options)
        self._clients.append(client)
        return client


@contextlib.asynccontextmanager
async def serve(
    *servicers: object,
    tls: ServerTLS | None = None,
    client_tls: ClientTLS | None = None,
    **server_options: Unpack[ServerOptions],
) -> AsyncIterator[RunningServer]:
    """Run ``servicers`` in a ``StreamServer`` on ``127.0.0.1:0`` for the block's duration.

    Args:
        servicers: servicer instances, added with ``StreamServer.add()``.
        tls: the server's ``ServerTLS``; ``None`` serves plaintext. Without
            ``client_tls``, ``RunningServer.client()`` refuses to make clients (its channel
            would be plaintext); connect to ``running.target`` with your own ``ClientTLS``.
        client_tls: the ``ClientTLS`` of the channel that ``RunningServer.client()`` uses:
            the CA that signed the server certificate, a ``server_name`` that the
            certificate names (the target is ``127.0.0.1``), and a client certificate
            when ``tls`` has ``client_ca`` (mutual TLS). Only with ``tls``.
        server_options: the other ``StreamServer`` keyword arguments
            ([`ServerOptions`][grpcstream.testing.ServerOptions]): ``health=True``,
            ``auth=BearerAuth(...)``, limits...

    Yields:
        A [`RunningServer`][grpcstream.testing.RunningServer] with a connected channel.
        On exit every client made with ``client()`` is closed, the channel is closed and
        the server stops without grace.

    Raises:
        ValueError: ``client_tls`` without ``tls``.
        TypeError: ``tls``/``client_tls`` of the wrong type, or anything ``StreamServer``
            rejects.
    """
    if client_tls is not None and tls is None:
        raise ValueError("serve(client_tls=...) is only for a TLS server: pass tls= as well")
    if client_tls is not None and not isinstance(client_tls, ClientTLS):
        raise TypeError(
            f"client_tls must be a grpcstream.ClientTLS or None, got {type(client_tls).__name__}"
        )
    server = StreamServer("127.0.0.1:0", tls=tls, **server_options)
    for servicer in servicers:
        server.add(servicer)
    await server.start()
    target = f"127.0.0.1:{server.port}"
    channel = connect(target, tls=client_tls)
    running = RunningServer(server=server, target=target, channel=channel)
    running._needs_client_tls = tls is not None and client_tls is None
    try:
        yield running
    finally:
        for client in running._clients:
            await client.aclose()
        await channel.close()
        await server.stop(grace=0)


class ServeFactory(Protocol):
    """The type of the ``grpcstream_serve`` fixture.

    ``await grpcstream_serve(*servicers, tls=..., client_tls=..., **server_options)``
    takes the arguments of [`serve()`][grpcstream.testing.serve] and returns its
    ``RunningServer``; everything it started is stopped after the test.
    """

    def __call__(
        self,
        *servicers: object,
        tls: ServerTLS | None = None,
        client_tls: ClientTLS | None = None,
        **server_options: Unpack[ServerOptions],
    ) -> Awaitable[RunningServer]:
        """Start ``servicers`` as ``serve()`` does; stopped at the end of the test."""
        ...
