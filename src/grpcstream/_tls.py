"""TLS settings for channels (``ClientTLS``) and servers (``ServerTLS``).

Both validate PEM inputs up front (a ``str`` where ``bytes`` are needed, a key without its
certificate, an empty file) so that mistakes fail with a clear error when the settings are
built, not as an opaque handshake failure later.
"""

from __future__ import annotations

import os

import grpc
from typing_extensions import override

from ._options import ChannelOption

__all__ = ["ClientTLS", "PemPath", "ServerTLS"]

PemPath = str | os.PathLike[str]

_REDACTED = "[REDACTED]"


def _pem(name: str, value: object, marker: str) -> bytes:
    """Check one PEM input and return it.

    Raises:
        TypeError: not bytes (a ``str`` gets a hint to encode it or use ``from_files``).
        ValueError: empty, or not PEM with a ``-----BEGIN ...{marker}`` block.
    """
    if isinstance(value, str):
        raise TypeError(
            f"{name} must be PEM bytes, got str; pass {name}.encode() or use from_files()"
        )
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be PEM bytes, got {type(value).__name__}")
    data = bytes(value)
    if not data.strip():
        raise ValueError(f"{name} is empty")
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise ValueError(f"{name} is not PEM: expected a '-----BEGIN ...{marker}-----' block")
    return data


def _read_file(name: str, path: PemPath) -> bytes:
    with open(path, "rb") as file:
        data = file.read()
    if not data.strip():
        raise ValueError(f"{name} file {os.fspath(path)!r} is empty")
    return data


def _read(name: str, path: PemPath | None) -> bytes | None:
    return None if path is None else _read_file(name, path)


def _size(data: bytes | None) -> str:
    return "None" if data is None else f"<{len(data)} bytes>"


class ClientTLS:
    """TLS settings for a client channel: pass as ``connect(target, tls=...)``.

    Args:
        ca: PEM bytes of the CA certificate(s) that signed the server's certificate.
            ``None`` uses the root certificates bundled with grpc (public CAs).
        cert: PEM bytes of the client certificate chain, for mutual TLS.
        key: PEM bytes of the client's private key; required exactly when ``cert`` is.
        server_name: the name to verify the server's certificate against, when it differs
            from the host in the target (for example when connecting by IP address).

    Raises:
        TypeError: a PEM value that is ``str`` (or anything else) instead of bytes.
        ValueError: an empty or non-PEM value, ``cert`` without ``key`` (or the reverse),
            or an empty ``server_name``.
    """

    __slots__ = ("_ca", "_cert", "_key", "_server_name")

    def __init__(
        self,
        ca: bytes | None = None,
        cert: bytes | None = None,
        key: bytes | None = None,
        server_name: str | None = None,
    ) -> None:
        if (cert is None) != (key is None):
            missing = "key" if key is None else "cert"
            raise ValueError(f"mutual TLS needs both cert and key; {missing} is missing")
        self._ca = None if ca is None else _pem("ca", ca, "CERTIFICATE")
        self._cert = None if cert is None else _pem("cert", cert, "CERTIFICATE")
        self._key = None if key is None else _pem("key", key, "PRIVATE KEY")
        if server_name is not None and (not isinstance(server_name, str) or not server_name):
            raise ValueError(f"server_name must be a non-empty str or None, got {server_name!r}")
        self._server_name = server_name

    @classmethod
    def from_files(
        cls,
        ca: PemPath | None = None,
        cert: PemPath | None = None,
        key: PemPath | None = None,
        server_name: str | None = None,
    ) -> ClientTLS:
        """Read the PEM files at the given paths (``None`` skips one).

        Raises:
            OSError: a file could not be read.
            ValueError: a file is empty or not PEM, or as for the constructor.
        """
        return cls(_read("ca", ca), _read("cert", cert), _read("key", key), server_name)

    @property
    def mutual(self) -> bool:
        """True when a client certificate is presented (mutual TLS)."""
        return self._cert is not None

    @property
    def server_name(self) -> str | None:
        """The name the server's certificate is checked against, if overridden."""
        return self._server_name

    def channel_credentials(self) -> tuple[grpc.ChannelCredentials, list[ChannelOption]]:
        """The grpc channel credentials, and the channel options they need."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self._ca, private_key=self._key, certificate_chain=self._cert
        )
        options: list[ChannelOption] = []
        if self._server_name is not None:
            options.append(("grpc.ssl_target_name_override", self._server_name))
        return credentials, options

    @override
    def __repr__(self) -> str:
        key = "None" if self._key is None else _REDACTED
        return (
            f"ClientTLS(ca={_size(self._ca)}, cert={_size(self._cert)}, key={key}, "
            f"server_name={self._server_name!r})"
        )


class ServerTLS:
    """TLS settings for a server: pass as ``StreamServer(..., tls=...)``.

    Args:
        cert: PEM bytes of the server's certificate chain.
        key: PEM bytes of the server's private key.
        client_ca: PEM bytes of the CA(s) that sign client certificates. When given,
            every client must present a certificate signed by it (mutual TLS); clients
            without one fail the handshake.

    Raises:
        TypeError: a PEM value that is ``str`` (or anything else) instead of bytes.
        ValueError: a missing, empty or non-PEM value.
    """

    __slots__ = ("_cert", "_client_ca", "_key")

    def __init__(self, cert: bytes, key: bytes, client_ca: bytes | None = None) -> None:
        if cert is None or key is None:
            raise ValueError("a TLS server needs both cert and key")
        self._cert = _pem("cert", cert, "CERTIFICATE")
        self._key = _pem("key", key, "PRIVATE KEY")
        self._client_ca = None if client_ca is None else _pem("client_ca", client_ca, "CERTIFICATE")

    @classmethod
    def from_files(cls, cert: PemPath, key: PemPath, client_ca: PemPath | None = None) -> ServerTLS:
        """Read the PEM files at the given paths.

        Raises:
            OSError: a file could not be read.
            ValueError: a file is empty or not PEM.
        """
        return cls(_read_file("cert", cert), _read_file("key", key), _read("client_ca", client_ca))

    @property
    def requires_client_cert(self) -> bool:
        """True when clients must present a certificate (``client_ca`` was given)."""
        return self._client_ca is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        """The grpc server credentials."""
        return grpc.ssl_server_credentials(
            [(self._key, self._cert)],
            root_certificates=self._client_ca,
            require_client_auth=self._client_ca is not None,
        )

    @override
    def __repr__(self) -> str:
        return (
            f"ServerTLS(cert={_size(self._cert)}, key={_REDACTED}, "
            f"client_ca={_size(self._client_ca)})"
        )
