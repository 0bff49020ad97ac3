"""The ``grpcstream`` pytest plugin: the ``grpcstream_serve`` fixture (needs pytest-asyncio).

The fixture is declared with ``pytest_asyncio.fixture``, so it is an async fixture in
both ``asyncio_mode = "strict"`` and ``"auto"``. It runs on the event loop of the test
that requests it (function scope unless ``asyncio_default_fixture_loop_scope`` says
otherwise), which is where the test's clients must run too.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator

from typing_extensions import Unpack

from ._tls import ClientTLS, ServerTLS
from .testing import RunningServer, ServeFactory, ServerOptions, serve

__all__: list[str] = []

if importlib.util.find_spec("pytest_asyncio") is not None:  # the fixture needs it
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def grpcstream_serve() -> AsyncIterator[ServeFactory]:
        """Start servicers in-process; everything started is stopped after the test."""
        async with contextlib.AsyncExitStack() as stack:

            async def start(
                *servicers: object,
                tls: ServerTLS | None = None,
                client_tls: ClientTLS | None = None,
                **server_options: Unpack[ServerOptions],
            ) -> RunningServer:
                return await stack.enter_async_context(
                    serve(*servicers, tls=tls, client_tls=client_tls, **server_options)
                )

            yield start
