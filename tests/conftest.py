"""Fixtures shared by every test package; importable helpers live in ``tests.support``.

``grpcstream_serve`` (grpcstream's own pytest plugin) starts in-process servers; the
fixtures here add what the library does not offer its users.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc.aio
import pytest

from tests.support.servers import (
    DummyClient,
    OpenDummyClient,
    OpenRawChannel,
    dummy_client,
    grpcstream_tasks,
    wait_until,
)


@pytest.fixture
async def open_dummy_client() -> AsyncIterator[OpenDummyClient]:
    """``await open_dummy_client(target, timeout=...)``: a DummyService StreamClient on a
    fresh channel, closed after the test (its type: ``tests.support.servers.OpenDummyClient``).
    """
    async with contextlib.AsyncExitStack() as stack:

        async def open_client(target: str, *, timeout: float | None = None) -> DummyClient:
            return await stack.enter_async_context(dummy_client(target, timeout=timeout))

        yield open_client


@pytest.fixture
async def open_raw_channel() -> AsyncIterator[OpenRawChannel]:
    """``await open_raw_channel(target)``: a plain grpc.aio channel, closed after the test
    (its type: ``tests.support.servers.OpenRawChannel``)."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_channel(target: str) -> grpc.aio.Channel:
            return await stack.enter_async_context(grpc.aio.insecure_channel(target))

        yield open_channel


@pytest.fixture
async def no_grpcstream_task_left() -> AsyncIterator[None]:
    """Fails the test if a grpcstream task (writer, producer) outlives it.

    Request it first among the test's fixtures, so that it is torn down last.
    """
    yield
    try:
        await wait_until(lambda: not grpcstream_tasks())
    except TimeoutError:
        names = sorted(task.get_name() for task in grpcstream_tasks())
        pytest.fail(f"grpcstream tasks outlived the test: {names}")
