"""TLS settings for channels and servers, and bearer-token authentication.

``ClientTLS`` / ``ServerTLS`` validate PEM inputs up front (a ``str`` where ``bytes`` are
needed, a key without its certificate, an empty file) so that mistakes fail with a clear
error when the settings are built, not as an opaque handshake failure later.

``BearerToken`` attaches ``authorization: Bearer <token>`` to every call a
``StreamClient`` starts (and to every retry attempt, so a token source may refresh).
``BearerAuth`` is a grpc.aio server interceptor: it checks that header before any handler
code runs and makes the accepted principal readable from ``CallContext.principal``.
Neither ever writes a token to a log or an error message.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import traceback
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
import grpc.aio
from typing_extensions import override

from ._exceptions import RpcError

__all__ = [
    "AUTH_FAILED_DETAILS",
    "DEFAULT_PUBLIC_SERVICES",
    "UNAUTHENTICATED_DETAILS",
    "BearerAuth",
    "BearerToken",
    "ClientTLS",
    "ServerTLS",
    "current_principal",
]

logger = logging.getLogger("grpcstream.server")

PemPath = str | os.PathLike[str]
ChannelOption = tuple[str, int | str]

UNAUTHENTICATED_DETAILS = "missing or invalid bearer token"
"""The only details a client sees when ``BearerAuth`` rejects a call."""
AUTH_FAILED_DETAILS = "authentication failed (internal error)"
"""Details when the ``verify`` hook itself raised (the traceback is logged, redacted)."""

DEFAULT_PUBLIC_SERVICES: tuple[str, ...] = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)
"""Services ``BearerAuth`` leaves open by default: health checks and reflection."""

_REDACTED = "[REDACTED]"


# -- TLS -------------------------------------------------------------------------------------


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


# -- bearer tokens: client side --------------------------------------------------------------

TokenSource = str | Callable[[], str | Awaitable[str]]
AuthMetadata = tuple[tuple[str, str], ...]


def bearer_metadata(token: object) -> AuthMetadata:
    """The metadata for ``token``; the token itself never appears in an error message.

    Raises:
        TypeError: the token is not a str.
        ValueError: the token is empty or contains whitespace or control characters.
    """
    if not isinstance(token, str):
        raise TypeError(f"a bearer token must be a str, got {type(token).__name__}")
    if not token:
        raise ValueError("the bearer token is empty")
    if not token.isprintable() or any(char.isspace() for char in token):
        raise ValueError("the bearer token contains whitespace or control characters")
    return (("authorization", f"Bearer {token}"),)


class BearerToken:
    """Client auth: send ``authorization: Bearer <token>`` with every call.

    Pass it as ``StreamClient(channel, Stub, auth=BearerToken(...))``. The header is added
    to every call the client starts and to every retry attempt.

    Args:
        token: the token, or a callable (plain or ``async``) that returns the current
            token. The callable runs once per call and per retry attempt, so it can
            refresh an expiring token; cache inside it if fetching is expensive. Whatever
            it raises propagates from the call (for a stream, from entering ``async with``).

    Raises:
        TypeError: ``token`` is neither a str nor callable.
        ValueError: a str token that is empty or contains whitespace.

    A bearer token is a password: send it only over TLS (``connect(..., tls=...)``). The
    repr never shows it.
    """

    __slots__ = ("_source", "_static")

    def __init__(self, token: TokenSource) -> None:
        if isinstance(token, str):
            self._static: AuthMetadata | None = bearer_metadata(token)
        elif callable(token):
            self._static = None
        else:
            raise TypeError(
                f"token must be a str or a callable returning one, got {type(token).__name__}"
            )
        self._source = token

    def fetch(self) -> AuthMetadata | Awaitable[object]:
        """The metadata now, or the token source's awaitable when it is async.

        ``StreamClient`` uses this to start a call without an extra await when the token
        is available synchronously. An awaitable result is the source's own (so that it
        can be wrapped in a task or awaited directly); ``bearer_metadata()`` turns the
        token it yields into metadata.

        Raises:
            TypeError: the token source returned something other than a str.
            ValueError: it returned an empty token or one with whitespace.
        """
        if self._static is not None:
            return self._static
        assert callable(self._source)
        value = self._source()
        if inspect.isawaitable(value):
            return value
        return bearer_metadata(value)

    async def metadata(self) -> AuthMetadata:
        """The ``authorization`` metadata for one call, with a freshly obtained token.

        Raises:
            TypeError: the token source returned something other than a str.
            ValueError: it returned an empty token or one with whitespace.
        """
        fetched = self.fetch()
        return fetched if isinstance(fetched, tuple) else bearer_metadata(await fetched)

    @override
    def __repr__(self) -> str:
        kind = "static" if self._static is not None else "callable"
        return f"BearerToken(<{kind} token {_REDACTED}>)"


# -- bearer tokens: server side --------------------------------------------------------------

_principal: contextvars.ContextVar[object] = contextvars.ContextVar(
    "grpcstream_principal", default=None
)


def current_principal() -> object:
    """The principal ``BearerAuth`` accepted for the RPC being handled (``None`` if none).

    grpcstream handlers read it as ``context.principal`` / ``stream.principal``; this
    function serves plain grpc.aio handlers on a ``StreamServer``, and tasks the handler
    started (they inherit it).
    """
    return _principal.get()


Verify = Callable[[str], object]


class BearerAuth(grpc.aio.ServerInterceptor):
    """Server auth: require ``authorization: Bearer <token>`` on every call.

    Pass it as ``StreamServer(..., auth=BearerAuth(verify))``. It runs as the outermost
    server interceptor, so it covers every method, grpcstream handlers and plain grpc.aio
    ones alike, before any handler code (or later interceptor) runs.

    Args:
        verify: ``verify(token)``, plain or ``async``, returns the caller's principal
            (any object: a user id, a claims dict) or ``None`` to reject the token.
            ``False`` is treated as a rejection too, so a boolean check cannot let a bad
            token through as "principal False". Raising an ``RpcError`` subclass (for
            example ``Unavailable`` when the identity provider is down) ends the call with
            that status; any other exception ends it with INTERNAL and is logged with the
            token redacted.
        public_services: full service names that need no token
            (``DEFAULT_PUBLIC_SERVICES``: health checking and reflection).

    A call without the header, with another scheme, with several ``authorization``
    headers, or with a token ``verify`` rejects ends with UNAUTHENTICATED and the fixed
    details ``UNAUTHENTICATED_DETAILS``; the handler never runs. Tokens are never logged
    and never echoed to the client.
    """

    def __init__(
        self,
        verify: Verify,
        *,
        public_services: Iterable[str] = DEFAULT_PUBLIC_SERVICES,
    ) -> None:
        if not callable(verify):
            raise TypeError(f"verify must be callable, got {type(verify).__name__}")
        self._verify = verify
        self._public = tuple(f"/{name}/" for name in public_services)

    @override
    def __repr__(self) -> str:
        name = getattr(self._verify, "__qualname__", type(self._verify).__name__)
        return f"BearerAuth(verify={name})"

    @override
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Check the token, then hand over to the next interceptor or the handler."""
        method: str = handler_call_details.method
        if method.startswith(self._public):
            return await continuation(handler_call_details)
        token = _bearer_token(handler_call_details.invocation_metadata)
        if token is None:
            logger.debug("rejected %s: no usable bearer token", method)
            return _rejecting(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS)
        try:
            principal = self._verify(token)
            if inspect.isawaitable(principal):
                principal = await principal
        except RpcError as error:
            return _rejecting(error.code, error.details, error.trailing_metadata)
        except Exception as error:
            logger.error(
                "BearerAuth verify raised; %s gets INTERNAL:\n%s",
                method,
                "".join(traceback.format_exception(error)).replace(token, _REDACTED),
            )
            return _rejecting(grpc.StatusCode.INTERNAL, AUTH_FAILED_DETAILS)
        if principal is None or principal is False:
            logger.debug("rejected %s: verify refused the token", method)
            return _rejecting(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS)
        # grpc.aio runs the interceptors and then the handler in the same task (one per
        # RPC), so the handler, and every task it starts, sees this value.
        _principal.set(principal)
        return await continuation(handler_call_details)


METADATA_TOO_LARGE = "request metadata size exceeds the server's limit of {} bytes"


def metadata_size(metadata: object) -> int:
    """The size of request metadata as HTTP/2 counts a header list: name + value + 32 each."""
    total = 0
    for key, value in metadata or ():  # type: ignore[attr-defined]
        total += len(key) + len(value) + 32
    return total


class MetadataLimit(grpc.aio.ServerInterceptor):
    """Refuse calls whose request metadata exceeds ``limit`` bytes (RESOURCE_EXHAUSTED).

    grpc's own ``grpc.max_metadata_size`` check can be bypassed by a client that splits
    the header block into HEADERS and CONTINUATION frames; this measures what the call
    actually carries, before authentication or any handler runs.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._details = METADATA_TOO_LARGE.format(limit)

    @override
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Measure the metadata; refuse the call or hand it on."""
        size = metadata_size(handler_call_details.invocation_metadata)
        if size > self._limit:
            logger.warning(
                "refused %s: %d bytes of metadata (limit %d)",
                handler_call_details.method,
                size,
                self._limit,
            )
            return _rejecting(grpc.StatusCode.RESOURCE_EXHAUSTED, self._details)
        return await continuation(handler_call_details)


def _bearer_token(metadata: object) -> str | None:
    values = [value for key, value in metadata or () if key == "authorization"]  # type: ignore[attr-defined]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _rejecting(
    code: grpc.StatusCode, details: str, trailing_metadata: object = ()
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that ends the call with ``code`` at once, whatever the method's pattern.

    A stream-stream handler neither waits for a request message nor needs one, so it
    answers unary and streaming calls alike before the client has sent anything.
    """

    async def reject(requests: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, details, trailing_metadata)  # type: ignore[arg-type]

    return grpc.stream_stream_rpc_method_handler(reject)
