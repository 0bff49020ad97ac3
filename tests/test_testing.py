"""grpcstream.testing and its pytest fixture, used the way an application's tests would."""

from __future__ import annotations

import asyncio
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

import grpcstream
from grpcstream.testing import ServeFactory, ServerOptions, serve
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.support.echo_servicer import Echo
from tests.support.servers import WAIT


async def test_serve_yields_a_running_server_and_clients() -> None:
    async with serve(Echo()) as running:
        assert running.target == f"127.0.0.1:{running.server.port}"
        client = running.client(dummy_pb2_grpc.DummyServiceStub)
        assert (await client.unary(client.stub.Unary, Req(value="hi"))).value == "hi"
        async with client.server_stream(client.stub.ServerStream, Req(seq=3)) as replies:
            assert [r.seq async for r in replies] == [0, 1, 2]
        assert await replies.code() is grpc.StatusCode.OK


async def test_fixture_starts_and_stops_servers(grpcstream_serve: ServeFactory) -> None:
    running = await grpcstream_serve(Echo(), health=True)
    client = running.client(dummy_pb2_grpc.DummyServiceStub)
    async with client.client_stream(client.stub.ClientStream) as upload:
        for seq in range(3):
            await upload.send(Req(seq=seq))
        assert (await upload.close_and_receive()).seq == 3


class EchoesTag(Echo):
    """``Unary`` answers ``"<value>|<the x-tag metadata>"``."""

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        tag = dict(context.invocation_metadata()).get("x-tag", "")
        assert isinstance(tag, str)
        return Reply(value=f"{request.value}|{tag}")


class FailsFirstCall(Echo):
    """``Unary`` fails with UNAVAILABLE on its first call, then echoes."""

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.calls += 1
        if self.calls == 1:
            raise grpcstream.Unavailable("first attempt fails")
        return Reply(value=request.value)


class NeverAnswers(Echo):
    """``ServerStream`` never sends: only a deadline ends it."""

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        await asyncio.Event().wait()


class RecordsPrincipal(Echo):
    """``Unary`` records who called (``context.principal``) and echoes."""

    def __init__(self) -> None:
        super().__init__()
        self.principals: list[object] = []

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self.principals.append(context.principal)
        return Reply(value=request.value)


async def test_client_sends_its_default_metadata() -> None:
    async with serve(EchoesTag()) as running:
        client = running.client(dummy_pb2_grpc.DummyServiceStub, metadata=[("x-tag", "t1")])
        assert (await client.unary(client.stub.Unary, Req(value="a"))).value == "a|t1"


async def test_client_retries_with_its_default_policy() -> None:
    servicer = FailsFirstCall()
    async with serve(servicer) as running:
        policy = grpcstream.RetryPolicy(initial_backoff=0.01)
        client = running.client(dummy_pb2_grpc.DummyServiceStub, retry=policy)
        assert (await client.unary(client.stub.Unary, Req(value="flaky"))).value == "flaky"
    assert servicer.calls == 2


async def test_client_without_retry_sees_the_first_failure() -> None:
    servicer = FailsFirstCall()
    async with serve(servicer) as running:
        client = running.client(dummy_pb2_grpc.DummyServiceStub)
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(client.stub.Unary, Req(value="flaky"))
    assert servicer.calls == 1


async def test_client_timeout_is_its_default_deadline() -> None:
    async with serve(NeverAnswers()) as running:
        client = running.client(dummy_pb2_grpc.DummyServiceStub, timeout=0.2)
        with pytest.raises(grpcstream.DeadlineExceeded):
            async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                async for _ in replies:
                    pass


async def test_client_max_queued_bounds_its_send_queues() -> None:
    async with serve(Echo()) as running:
        client = running.client(dummy_pb2_grpc.DummyServiceStub, max_queued=3)
        async with client.client_stream(client.stub.ClientStream) as upload:
            assert upload.statistics().max_size == 3
            await upload.send(Req(seq=0))
            assert (await upload.close_and_receive()).seq == 1


# --8<-- [start:auth]
async def test_client_auth_reaches_a_server_with_bearer_auth() -> None:
    servicer = RecordsPrincipal()
    auth = grpcstream.BearerAuth(lambda token: {"s3cret": "alice"}.get(token))
    async with serve(servicer, auth=auth) as running:
        anonymous = running.client(dummy_pb2_grpc.DummyServiceStub)
        with pytest.raises(grpcstream.Unauthenticated):
            await anonymous.unary(anonymous.stub.Unary, Req(value="a"))
        alice = running.client(
            dummy_pb2_grpc.DummyServiceStub, auth=grpcstream.BearerToken("s3cret")
        )
        assert (await alice.unary(alice.stub.Unary, Req(value="a"))).value == "a"
    assert servicer.principals == ["alice"]  # the anonymous call never reached the handler


# --8<-- [end:auth]


def test_server_options_are_every_stream_server_keyword_but_address_and_tls() -> None:
    parameters = inspect.signature(grpcstream.StreamServer).parameters
    keywords = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(ServerOptions.__annotations__) == keywords - {"tls"}


SERVER_NAME = "svc.grpcstream.test"


@dataclass
class Certs:
    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert

    def server_tls(self, *, mutual: bool = False) -> grpcstream.ServerTLS:
        return grpcstream.ServerTLS(
            cert=self.server.cert_chain_pems[0].bytes(),
            key=self.server.private_key_pem.bytes(),
            client_ca=self.ca.cert_pem.bytes() if mutual else None,
        )

    def client_tls(self, *, with_cert: bool = False) -> grpcstream.ClientTLS:
        return grpcstream.ClientTLS(
            ca=self.ca.cert_pem.bytes(),
            cert=self.client.cert_chain_pems[0].bytes() if with_cert else None,
            key=self.client.private_key_pem.bytes() if with_cert else None,
            server_name=SERVER_NAME,
        )


@pytest.fixture(scope="module")
def certs() -> Certs:
    ca = trustme.CA()
    return Certs(ca, ca.issue_cert(SERVER_NAME), ca.issue_cert("client.grpcstream.test"))


async def test_serve_with_tls_gives_clients_an_encrypted_channel(certs: Certs) -> None:
    async with serve(Echo(), tls=certs.server_tls(), client_tls=certs.client_tls()) as running:
        client = running.client(dummy_pb2_grpc.DummyServiceStub)
        assert (await client.unary(client.stub.Unary, Req(value="hi"))).value == "hi"
        # The server really speaks TLS only: a plaintext channel to it fails.
        async with grpcstream.connect(running.target) as plain:
            raw = grpcstream.StreamClient(plain, dummy_pb2_grpc.DummyServiceStub, timeout=WAIT)
            with pytest.raises(grpcstream.Unavailable):
                await raw.unary(raw.stub.Unary, Req(value="hi"))


# --8<-- [start:tls]
async def test_serve_with_mutual_tls_presents_the_client_certificate(certs: Certs) -> None:
    async with serve(
        Echo(),
        tls=certs.server_tls(mutual=True),
        client_tls=certs.client_tls(with_cert=True),
    ) as running:
        client = running.client(dummy_pb2_grpc.DummyServiceStub)
        async with client.server_stream(client.stub.ServerStream, Req(seq=2)) as replies:
            assert [r.seq async for r in replies] == [0, 1]


# --8<-- [end:tls]


async def test_tls_server_without_client_tls_refuses_to_make_clients(certs: Certs) -> None:
    async with serve(Echo(), tls=certs.server_tls()) as running:
        with pytest.raises(ValueError, match="client_tls"):
            running.client(dummy_pb2_grpc.DummyServiceStub)
        # Its own channel with the right ClientTLS works: the server is fine.
        async with grpcstream.connect(running.target, tls=certs.client_tls()) as channel:
            own = grpcstream.StreamClient(channel, dummy_pb2_grpc.DummyServiceStub, timeout=WAIT)
            assert (await own.unary(own.stub.Unary, Req(value="x"))).value == "x"


async def test_client_tls_without_tls_is_refused(certs: Certs) -> None:
    with pytest.raises(ValueError, match="only for a TLS server"):
        async with serve(Echo(), client_tls=certs.client_tls()):
            pass


async def test_fixture_passes_tls_through(grpcstream_serve: ServeFactory, certs: Certs) -> None:
    running = await grpcstream_serve(Echo(), tls=certs.server_tls(), client_tls=certs.client_tls())
    client = running.client(dummy_pb2_grpc.DummyServiceStub)
    assert (await client.unary(client.stub.Unary, Req(value="tls"))).value == "tls"


FIXTURE_USER_TEST = """
import pytest

import grpcstream
from grpcstream.testing import ServeFactory
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req


class Echo(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        return Reply(value=request.value)


{marker}
async def test_echo(grpcstream_serve: ServeFactory) -> None:
    running = await grpcstream_serve(Echo())
    client = running.client(dummy_pb2_grpc.DummyServiceStub)
    assert (await client.unary(client.stub.Unary, Req(value="hi"))).value == "hi"
"""


@pytest.mark.parametrize(
    ("mode", "marker"),
    [("strict", "@pytest.mark.asyncio"), ("auto", ""), ("auto", "@pytest.mark.asyncio")],
)
async def test_fixture_works_in_strict_and_auto_mode(
    tmp_path: Path, mode: str, marker: str
) -> None:
    # A separate pytest run with its own ini file: the mode is per session.
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    (tmp_path / "test_user.py").write_text(FIXTURE_USER_TEST.format(marker=marker))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(tmp_path),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=50)
    assert process.returncode == 0, output.decode()
    assert "1 passed" in output.decode()
