"""Fixtures of the broadcast tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.redis_fixtures import RedisServer, redis_server


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    """A started redis-server with AOF persistence (``fsync always``), killed afterwards."""
    async with redis_server() as server:
        yield server
