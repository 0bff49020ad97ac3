"""grpcstream.testing and its pytest fixture, used the way an application's tests would."""

from __future__ import annotations

import grpc

from grpcstream.testing import ServeFactory, serve
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Req

from .dummy_servicer import DummyStreamService


async def test_serve_yields_a_running_server_and_clients() -> None:
    async with serve(DummyStreamService()) as running:
        assert running.target == f"127.0.0.1:{running.server.port}"
        client = running.client(dummy_pb2_grpc.DummyServiceStub)
        assert (await client.unary(client.stub.Unary, Req(value="hi"))).value == "hi"
        async with client.server_stream(client.stub.ServerStream, Req(seq=3)) as replies:
            assert [r.seq async for r in replies] == [0, 1, 2]
        assert await replies.code() is grpc.StatusCode.OK


async def test_fixture_starts_and_stops_servers(grpcstream_serve: ServeFactory) -> None:
    running = await grpcstream_serve(DummyStreamService(), health=True)
    client = running.client(dummy_pb2_grpc.DummyServiceStub)
    async with client.client_stream(client.stub.ClientStream) as upload:
        for seq in range(3):
            await upload.send(Req(seq=seq))
        assert (await upload.close_and_receive()).seq == 3
