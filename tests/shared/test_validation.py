"""Bad settings fail at once with a typed error that names the argument."""

from __future__ import annotations

import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req


class Echo(grpcstream.StreamServicer):
    """Only Unary; registered with the generated add function named explicitly."""

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        return Reply(value=request.value)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "64", None])
def test_a_servicer_with_an_invalid_max_queued_is_refused_at_add(bad: object) -> None:
    servicer = Echo()
    servicer.max_queued = bad  # type: ignore[assignment]
    server = grpcstream.StreamServer()
    with pytest.raises(ValueError, match="max_queued must be an int >= 1"):
        server.add(servicer, dummy_pb2_grpc.add_DummyServiceServicer_to_server)


@pytest.mark.parametrize("bad", [0, -2.0, True, "5", float("nan")])
def test_a_servicer_with_an_invalid_idle_timeout_is_refused_at_add(bad: object) -> None:
    servicer = Echo()
    servicer.idle_timeout = bad  # type: ignore[assignment]
    server = grpcstream.StreamServer()
    with pytest.raises(ValueError, match="idle_timeout must be a positive number of seconds"):
        server.add(servicer, dummy_pb2_grpc.add_DummyServiceServicer_to_server)


def test_a_servicer_with_valid_settings_is_added() -> None:
    servicer = Echo()
    servicer.max_queued = 1
    servicer.idle_timeout = 0.5
    server = grpcstream.StreamServer()
    server.add(servicer, dummy_pb2_grpc.add_DummyServiceServicer_to_server)
    assert server.service_names == ("grpcstream.demo.testing.v1.DummyService",)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_queued": 0}, ValueError, "max_queued must be an int >= 1"),
        ({"timeout": 0}, ValueError, "timeout must be a positive number of seconds"),
        ({"timeout": float("nan")}, ValueError, "timeout must be a positive number"),
        ({"retry": 3}, TypeError, "retry must be a grpcstream.RetryPolicy or None"),
        ({"auth": "token"}, TypeError, "auth must be a grpcstream.BearerToken or None"),
        ({"telemetry": object()}, TypeError, "telemetry must be a grpcstream.Telemetry"),
        ({"compression": "gzip"}, TypeError, "compression must be a grpcstream.Compression"),
        ({"metadata": (("Bad Key", "v"),)}, ValueError, "metadata keys must be lowercase"),
    ],
)
async def test_a_client_with_invalid_settings_is_refused(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    async with grpcstream.connect("127.0.0.1:1") as channel:
        with pytest.raises(error, match=match):
            grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"grace": -1}, ValueError, "grace must be a number of seconds >= 0"),
        ({"compression": 1}, TypeError, "compression must be a grpcstream.Compression"),
    ],
)
def test_a_server_with_invalid_settings_is_refused(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        grpcstream.StreamServer(**kwargs)  # type: ignore[arg-type]


def test_connect_refuses_tls_settings_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"tls must be a grpcstream\.ClientTLS or None"):
        grpcstream.connect("127.0.0.1:1", tls="yes")  # type: ignore[arg-type]


def test_keepalive_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="time must be a positive number of seconds"):
        grpcstream.KeepAlive(time=0)
