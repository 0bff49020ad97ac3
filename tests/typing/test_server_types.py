"""The handler adapters type-check as overrides of the generated servicer, and only then.

mypy --strict runs with ``warn_unused_ignores``: each ``type: ignore`` below must match
an error mypy really reports, so this file fails type-checking if a wrong handler ever
stops being caught.
"""

from __future__ import annotations

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from grpcstream_demo.logs_pb2 import LogEntry
from tests.support.dummy_servicer import DummyStreamService


class WrongHandlers(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    @grpcstream.server_streaming
    async def ServerStream(  # type: ignore[override]
        self, request: Req, stream: grpcstream.ServerStream[LogEntry]
    ) -> None:  # sends the wrong message type
        await stream.send(LogEntry())

    @grpcstream.unary
    async def Unary(  # type: ignore[override]
        self, request: LogEntry, context: grpcstream.CallContext
    ) -> Reply:  # expects the wrong request type
        return Reply()

    @grpcstream.server_streaming
    async def Bidi(  # type: ignore[override]
        self, request: Req, stream: grpcstream.ServerStream[Reply]
    ) -> None:  # the wrong adapter for a bidi method
        return None


def test_the_well_typed_servicer_is_a_generated_servicer() -> None:
    assert issubclass(DummyStreamService, dummy_pb2_grpc.DummyServiceServicer)
    assert DummyStreamService.ServerStream.__name__ == "ServerStream"
    assert WrongHandlers.Unary.__name__ == "Unary"
