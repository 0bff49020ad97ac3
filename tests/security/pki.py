"""Certificates made at test time (trustme) and a DummyService client for the security tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trustme

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from tests.support.servers import WAIT, DummyClient

SERVER_NAME = "logs.grpcstream.test"


@dataclass
class Pki:
    """A CA, a server certificate signed by it, a client certificate, and a stranger CA."""

    ca: trustme.CA
    other_ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    def server_tls(self, *, mutual: bool = False) -> grpcstream.ServerTLS:
        return grpcstream.ServerTLS(
            cert=self.server.cert_chain_pems[0].bytes(),
            key=self.server.private_key_pem.bytes(),
            client_ca=self.ca_pem if mutual else None,
        )

    def client_tls(
        self, *, with_cert: bool = False, ca: trustme.CA | None = None
    ) -> grpcstream.ClientTLS:
        return grpcstream.ClientTLS(
            ca=(ca or self.ca).cert_pem.bytes(),
            cert=self.client.cert_chain_pems[0].bytes() if with_cert else None,
            key=self.client.private_key_pem.bytes() if with_cert else None,
            server_name=SERVER_NAME,
        )


def make_pki() -> Pki:
    """A fresh CA with a server and a client certificate, and an unrelated CA."""
    ca = trustme.CA()
    return Pki(
        ca=ca,
        other_ca=trustme.CA(),
        server=ca.issue_cert(SERVER_NAME),
        client=ca.issue_cert("client.grpcstream.test"),
    )


@contextlib.asynccontextmanager
async def tls_client(
    target: str, tls: grpcstream.ClientTLS | None, **client_options: object
) -> AsyncIterator[DummyClient]:
    """A DummyService StreamClient on a channel with ``tls`` (None: plaintext)."""
    async with (
        grpcstream.connect(target, tls=tls) as channel,
        grpcstream.StreamClient(
            channel,
            dummy_pb2_grpc.DummyServiceStub,
            timeout=WAIT,
            **client_options,  # type: ignore[arg-type]
        ) as client,
    ):
        yield client
