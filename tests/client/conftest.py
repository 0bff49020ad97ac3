"""Fixtures for the client tests: an echo server and its client, and an injected sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.client.doubles import Echo, Sleeps
from tests.support.servers import DummyClient, dummy_client, serving


@pytest.fixture
def echo() -> Echo:
    """The ``Echo`` servicer the ``echo_client`` fixture talks to (the same instance)."""
    return Echo()


@pytest.fixture
async def echo_client(echo: Echo) -> AsyncIterator[DummyClient]:
    """A client of an in-process StreamServer serving ``echo``."""
    async with serving(echo) as (_, target), dummy_client(target) as client:
        yield client


@pytest.fixture
def sleeps() -> Sleeps:
    """A ``RetryPolicy(sleep=...)`` that records each backoff instead of waiting."""
    return Sleeps()
