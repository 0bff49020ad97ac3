"""Bearer-token authentication: ``BearerToken`` on the client, ``BearerAuth`` on the server.

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
import traceback
from collections.abc import Awaitable, Callable, Iterable

import grpc
import grpc.aio
from typing_extensions import override

from ._exceptions import RpcError
from ._server_interceptors import Continuation, MaybeHandler, rejecting

__all__ = [
    "AUTH_FAILED_DETAILS",
    "DEFAULT_PUBLIC_SERVICES",
    "UNAUTHENTICATED_DETAILS",
    "AuthMetadata",
    "BearerAuth",
    "BearerToken",
    "bearer_metadata",
    "current_principal",
]

logger = logging.getLogger("grpcstream.server")

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

# -- client side ----------------------------------------------------------------------------

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

    @override
    def __repr__(self) -> str:
        kind = "static" if self._static is not None else "callable"
        return f"BearerToken(<{kind} token {_REDACTED}>)"


# -- server side ----------------------------------------------------------------------------

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
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MaybeHandler:
        """Check the token, then hand over to the next interceptor or the handler."""
        method: str = handler_call_details.method
        if method.startswith(self._public):
            return await continuation(handler_call_details)
        token = _bearer_token(handler_call_details.invocation_metadata)
        if token is None:
            logger.debug("rejected %s: no usable bearer token", method)
            return rejecting(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS)
        try:
            principal = self._verify(token)
            if inspect.isawaitable(principal):
                principal = await principal
        except RpcError as error:
            return rejecting(error.code, error.details, error.trailing_metadata)
        except Exception as error:
            logger.error(
                "BearerAuth verify raised; %s gets INTERNAL:\n%s",
                method,
                "".join(traceback.format_exception(error)).replace(token, _REDACTED),
            )
            return rejecting(grpc.StatusCode.INTERNAL, AUTH_FAILED_DETAILS)
        if principal is None or principal is False:
            logger.debug("rejected %s: verify refused the token", method)
            return rejecting(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS)
        # grpc.aio runs the interceptors and then the handler in the same task (one per
        # RPC), so the handler, and every task it starts, sees this value.
        _principal.set(principal)
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
