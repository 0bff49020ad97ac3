"""Testing the Echo service with the grpcstream_serve fixture. Run: pytest test_echo.py"""

from __future__ import annotations

import pytest
from echo_pb2 import Ping
from echo_pb2_grpc import EchoStub
from echo_server import Echo

from grpcstream.testing import ServeFactory


@pytest.mark.asyncio  # needed in pytest-asyncio's default strict mode, harmless in auto
async def test_repeat_sends_count_pongs(grpcstream_serve: ServeFactory) -> None:
    running = await grpcstream_serve(Echo())
    echo = running.client(EchoStub)
    async with echo.server_stream(echo.stub.Repeat, Ping(text="x", count=3)) as pongs:
        assert [pong.seq async for pong in pongs] == [1, 2, 3]
