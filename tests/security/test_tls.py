"""TLS and mutual TLS (ClientTLS, ServerTLS), end to end with certificates made at test time."""

from __future__ import annotations

from pathlib import Path

import pytest

import grpcstream
from grpcstream_demo.dummy_pb2 import Req
from tests.security.pki import SERVER_NAME, Pki, tls_client
from tests.support.echo_servicer import Echo
from tests.support.servers import DummyClient, serving


async def exercise_four_patterns(client: DummyClient) -> None:
    """One call of each pattern, checking the replies."""
    stub = client.stub
    assert (await client.unary(stub.Unary, Req(value="hi", seq=7))).seq == 7
    async with client.server_stream(stub.ServerStream, Req(seq=3)) as replies:
        assert [reply.seq async for reply in replies] == [0, 1, 2]
    async with client.client_stream(stub.ClientStream) as upload:
        for seq in range(4):
            await upload.send(Req(seq=seq))
        assert (await upload.close_and_receive()).value == "0,1,2,3"
    async with client.bidi_stream(stub.Bidi) as chat:
        for seq in range(3):
            await chat.send(Req(seq=seq, value="x"))
        await chat.close_send()
        assert [reply.seq async for reply in chat] == [0, 1, 2]


async def test_tls_serves_all_four_patterns(pki: Pki) -> None:
    async with (
        serving(Echo(), tls=pki.server_tls()) as (_, target),
        tls_client(target, pki.client_tls()) as client,
    ):
        await exercise_four_patterns(client)


async def test_mutual_tls_serves_all_four_patterns(pki: Pki) -> None:
    async with (
        serving(Echo(), tls=pki.server_tls(mutual=True)) as (_, target),
        tls_client(target, pki.client_tls(with_cert=True)) as client,
    ):
        await exercise_four_patterns(client)


async def test_mutual_tls_refuses_a_client_without_a_certificate(pki: Pki) -> None:
    servicer = Echo()
    async with (
        serving(servicer, tls=pki.server_tls(mutual=True)) as (_, target),
        tls_client(target, pki.client_tls(with_cert=False)) as client,
    ):
        with pytest.raises(grpcstream.Unavailable) as caught:
            await client.unary(client.stub.Unary, Req(value="hi"))
        # grpc only says "Socket closed" here; on a TLS channel grpcstream adds a hint.
        assert "TLS handshake may have failed" in caught.value.details
        assert "cert and key" in caught.value.details
    assert servicer.calls == 0


async def test_mutual_tls_refuses_a_certificate_from_another_ca(pki: Pki) -> None:
    stranger = pki.other_ca.issue_cert("client.grpcstream.test")
    tls = grpcstream.ClientTLS(
        ca=pki.ca_pem,
        cert=stranger.cert_chain_pems[0].bytes(),
        key=stranger.private_key_pem.bytes(),
        server_name=SERVER_NAME,
    )
    servicer = Echo()
    async with (
        serving(servicer, tls=pki.server_tls(mutual=True)) as (_, target),
        tls_client(target, tls) as client,
    ):
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(client.stub.Unary, Req(value="hi"))
    assert servicer.calls == 0


async def test_a_client_trusting_the_wrong_ca_gets_a_clear_unavailable(pki: Pki) -> None:
    servicer = Echo()
    async with (
        serving(servicer, tls=pki.server_tls()) as (_, target),
        tls_client(target, pki.client_tls(ca=pki.other_ca)) as client,
    ):
        with pytest.raises(grpcstream.Unavailable) as caught:
            await client.unary(client.stub.Unary, Req(value="hi"))
        # grpc's own details name the handshake and the reason; grpcstream passes them on.
        assert "tls handshake failed" in caught.value.details.lower()
        assert "CERTIFICATE_VERIFY_FAILED" in caught.value.details
        assert "grpcstream:" not in caught.value.details  # no hint needed
        with pytest.raises(grpcstream.Unavailable, match=r"(?i)tls"):
            async with client.server_stream(client.stub.ServerStream, Req(seq=1)) as replies:
                async for _ in replies:
                    pass
    assert servicer.calls == 0


async def test_a_wrong_server_name_fails_verification(pki: Pki) -> None:
    tls = grpcstream.ClientTLS(ca=pki.ca_pem, server_name="not-the-server.test")
    async with (
        serving(Echo(), tls=pki.server_tls()) as (_, target),
        tls_client(target, tls) as client,
    ):
        with pytest.raises(grpcstream.Unavailable):
            await client.unary(client.stub.Unary, Req(value="hi"))


async def test_a_plaintext_client_cannot_talk_to_a_tls_server(pki: Pki) -> None:
    servicer = Echo()
    async with (
        serving(servicer, tls=pki.server_tls()) as (_, target),
        tls_client(target, None) as client,
    ):
        with pytest.raises(grpcstream.Unavailable) as caught:
            await client.unary(client.stub.Unary, Req(value="hi"))
        assert "grpcstream:" not in caught.value.details  # not a TLS channel: no TLS hint
    assert servicer.calls == 0


async def test_from_files_reads_pem_files(pki: Pki, tmp_path: Path) -> None:
    paths = {}
    for name, blob in {
        "ca.pem": pki.ca.cert_pem,
        "server.pem": pki.server.cert_chain_pems[0],
        "server.key": pki.server.private_key_pem,
        "client.pem": pki.client.cert_chain_pems[0],
        "client.key": pki.client.private_key_pem,
    }.items():
        paths[name] = tmp_path / name
        blob.write_to_path(str(paths[name]))
    server_tls = grpcstream.ServerTLS.from_files(
        cert=paths["server.pem"], key=paths["server.key"], client_ca=str(paths["ca.pem"])
    )
    client_tls = grpcstream.ClientTLS.from_files(
        ca=paths["ca.pem"],
        cert=paths["client.pem"],
        key=paths["client.key"],
        server_name=SERVER_NAME,
    )
    assert server_tls.requires_client_cert
    assert client_tls.mutual
    async with (
        serving(Echo(), tls=server_tls) as (_, target),
        tls_client(target, client_tls) as client,
    ):
        assert (await client.unary(client.stub.Unary, Req(value="files"))).value == "files"


def test_tls_settings_reject_str_instead_of_bytes(pki: Pki) -> None:
    with pytest.raises(TypeError, match=r"ca must be PEM bytes, got str.*encode\(\)"):
        grpcstream.ClientTLS(ca=pki.ca.cert_pem.bytes().decode())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be PEM bytes"):
        grpcstream.ServerTLS(
            cert=pki.server.cert_chain_pems[0].bytes(),
            key=pki.server.private_key_pem.bytes().decode(),  # type: ignore[arg-type]
        )


def test_tls_settings_need_cert_and_key_together(pki: Pki) -> None:
    with pytest.raises(ValueError, match="cert is missing"):
        grpcstream.ClientTLS(ca=pki.ca_pem, key=pki.client.private_key_pem.bytes())
    with pytest.raises(ValueError, match="key is missing"):
        grpcstream.ClientTLS(ca=pki.ca_pem, cert=pki.client.cert_chain_pems[0].bytes())
    with pytest.raises(ValueError, match="both cert and key"):
        grpcstream.ServerTLS(cert=pki.server.cert_chain_pems[0].bytes(), key=None)  # type: ignore[arg-type]


def test_tls_settings_reject_empty_and_non_pem_values(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ca is empty"):
        grpcstream.ClientTLS(ca=b"  \n")
    with pytest.raises(ValueError, match="ca is not PEM"):
        grpcstream.ClientTLS(ca=b"\x30\x82\x01\x0a")  # DER, not PEM
    with pytest.raises(ValueError, match="key is not PEM"):
        grpcstream.ServerTLS(  # a certificate passed where the key belongs
            cert=pki.server.cert_chain_pems[0].bytes(), key=pki.server.cert_chain_pems[0].bytes()
        )
    with pytest.raises(ValueError, match="server_name"):
        grpcstream.ClientTLS(ca=pki.ca_pem, server_name="")
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        grpcstream.ClientTLS.from_files(ca=empty)
    with pytest.raises(FileNotFoundError):
        grpcstream.ServerTLS.from_files(cert=tmp_path / "missing.pem", key=empty)


def test_tls_arguments_must_have_the_right_type(pki: Pki) -> None:
    with pytest.raises(TypeError, match="ClientTLS"):
        grpcstream.connect("127.0.0.1:1", tls=pki.server_tls())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ServerTLS"):
        grpcstream.StreamServer(tls=pki.client_tls())  # type: ignore[arg-type]


def test_tls_reprs_never_show_private_keys(pki: Pki) -> None:
    client = pki.client_tls(with_cert=True)
    server = pki.server_tls(mutual=True)
    for text, key in (
        (repr(client), pki.client.private_key_pem.bytes()),
        (repr(server), pki.server.private_key_pem.bytes()),
    ):
        assert "REDACTED" in text
        assert "PRIVATE" not in text
        assert key.decode().splitlines()[1] not in text
    assert "server_name='logs.grpcstream.test'" in repr(client)


def test_channel_credentials_carry_the_server_name_override(pki: Pki) -> None:
    _, options = pki.client_tls().channel_credentials()
    assert options == [("grpc.ssl_target_name_override", SERVER_NAME)]
    _, options = grpcstream.ClientTLS(ca=pki.ca_pem).channel_credentials()
    assert options == []
