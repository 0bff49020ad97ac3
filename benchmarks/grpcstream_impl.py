"""The LogService benchmark written with grpcstream's public API (placeholder).

grpcstream's client and server are still being written; until they land,
``benchmarks.run.grpcstream_available()`` is False and this module is never used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .scenarios import IdleStreams, ScenarioClient

__all__ = ["GrpcstreamClient", "start_grpcstream_server"]

_NOT_YET = "grpcstream's client/server API has not landed yet"


async def start_grpcstream_server(
    host: str = "127.0.0.1",
) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Start the grpcstream server; return its port and a coroutine function that stops it."""
    raise NotImplementedError(_NOT_YET)


class GrpcstreamClient(ScenarioClient):
    """Runs each scenario through ``grpcstream.StreamClient``."""

    def __init__(self, target: str) -> None:
        self._target = target

    async def connect(self) -> None:
        raise NotImplementedError(_NOT_YET)

    async def aclose(self) -> None:
        return None

    async def server_stream(self, count: int, deadline: float) -> int:
        raise NotImplementedError(_NOT_YET)

    async def client_stream(self, count: int, deadline: float) -> int:
        raise NotImplementedError(_NOT_YET)

    async def bidi_pipelined(self, count: int, deadline: float) -> int:
        raise NotImplementedError(_NOT_YET)

    async def ping_pong(self, count: int, deadline: float) -> list[int]:
        raise NotImplementedError(_NOT_YET)

    async def unary(self, count: int, concurrency: int, deadline: float) -> int:
        raise NotImplementedError(_NOT_YET)

    async def producers(self, count: int, producers: int, deadline: float) -> int:
        raise NotImplementedError(_NOT_YET)

    async def open_idle_streams(self, count: int, deadline: float) -> IdleStreams:
        raise NotImplementedError(_NOT_YET)
