"""Security: TLS with client certificates (mTLS) and bearer-token auth, end to end."""

from __future__ import annotations

import asyncio
import hmac
import tempfile
from pathlib import Path

import trustme

import grpcstream
from docs.snippets.server import LogService
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import StatusRequest

TOKENS = {"dashboard": "dashboard-token"}  # principal -> token: your identity provider


def write_test_pki(directory: Path) -> None:
    """Certificates for the example; in production they come from your CA."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = ca.issue_cert("logs.internal")
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    client = ca.issue_cert("dashboard@example.com")
    client.cert_chain_pems[0].write_to_path(str(directory / "client.pem"))
    client.private_key_pem.write_to_path(str(directory / "client.key"))


# --8<-- [start:server]
async def verify(token: str) -> str | None:
    # compare_digest takes as long for a near miss as for a wild guess: `==` would leak,
    # through timing, how much of a guessed token is right.
    for principal, expected in TOKENS.items():
        if hmac.compare_digest(token.encode(), expected.encode()):
            return principal
    return None  # UNAUTHENTICATED


def secure_server(tls_dir: Path) -> grpcstream.StreamServer:
    return grpcstream.StreamServer(
        "127.0.0.1:0",
        tls=grpcstream.ServerTLS.from_files(
            cert=tls_dir / "server.pem",
            key=tls_dir / "server.key",
            client_ca=tls_dir / "ca.pem",  # given: every client needs a certificate
        ),
        auth=grpcstream.BearerAuth(verify),  # health and reflection stay open
        max_receive_message_bytes=1024 * 1024,
        max_metadata_bytes=16 * 1024,
        max_concurrent_rpcs=1000,
    )


# --8<-- [end:server]


async def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tls_dir = Path(name)
        write_test_pki(tls_dir)
        server = secure_server(tls_dir)
        server.add(LogService())
        await server.start()
        target = f"127.0.0.1:{server.port}"
        try:
            # --8<-- [start:client]
            async def fresh_token() -> str:
                return "dashboard-token"  # called for every call and every retry

            tls = grpcstream.ClientTLS.from_files(
                ca=tls_dir / "ca.pem",
                cert=tls_dir / "client.pem",  # mTLS only
                key=tls_dir / "client.key",
                server_name="logs.internal",  # the name in the server's certificate
            )
            async with grpcstream.connect(target, tls=tls) as channel:
                logs = StreamClient(
                    channel, logs_pb2_grpc.LogServiceStub, auth=grpcstream.BearerToken(fresh_token)
                )
                status = await logs.unary(logs.stub.GetStatus, StatusRequest(service="api"))
                print("over mTLS with a token: healthy", status.healthy)

                intruder = StreamClient(
                    channel, logs_pb2_grpc.LogServiceStub, auth=grpcstream.BearerToken("guess")
                )
                try:
                    await intruder.unary(intruder.stub.GetStatus, StatusRequest(service="api"))
                except grpcstream.Unauthenticated:
                    print("bad token: UNAUTHENTICATED")
            # --8<-- [end:client]
        finally:
            await server.stop(grace=0)


if __name__ == "__main__":
    asyncio.run(main())
