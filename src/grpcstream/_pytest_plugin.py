"""The ``grpcstream`` pytest plugin: the ``grpcstream_serve`` fixture (needs pytest-asyncio)."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

from .testing import RunningServer, ServeFactory, serve

__all__: list[str] = []

if importlib.util.find_spec("pytest_asyncio") is not None:  # the fixture needs it
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def grpcstream_serve() -> AsyncIterator[ServeFactory]:
        """Start servicers in-process; everything started is stopped after the test."""
        async with contextlib.AsyncExitStack() as stack:

            async def start(*servicers: object, **server_options: Any) -> RunningServer:
                return await stack.enter_async_context(serve(*servicers, **server_options))

            yield start
