"""The one module that knows grpc.aio's internals and wordings.

Everything grpcstream relies on that grpc does not promise lives here: the private
attributes it reads (a call's status held by the cython call, a multicallable's method
name, the C-core's batch error class) and the status wordings it recognises ("Internal
error from Core", "failed to connect to all addresses"). ``translate()`` is the boundary
where grpc statuses and ``AioRpcError`` become grpcstream's typed errors.

Each hook is read directly, never through ``getattr(..., None)``: if a grpcio release
moves one, grpcstream fails loudly, and ``tests/shared/test_grpc_compat.py`` names it.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import grpc
import grpc.aio
from grpc._cython import cygrpc  # type: ignore[attr-defined]

from ._base import to_metadata
from ._exceptions import DeadlineExceeded, RpcError, Unknown, rpc_error

__all__ = [
    "CONNECT_FAILED",
    "CORE_INTERNAL",
    "EOF",
    "HIDDEN_BROKEN_STREAM",
    "HIDDEN_DEADLINE",
    "STREAM_BROKEN_ERRORS",
    "TLS_CONNECT_HINT",
    "context_code",
    "from_aio",
    "is_hidden_internal",
    "method_name",
    "status_now",
    "translate",
]

EOF: Final = grpc.aio.EOF
"""What ``read()`` returns at the end of a stream (grpcstream turns it into StopAsyncIteration)."""

CORE_INTERNAL: Final = "Internal error from Core"
"""The details grpc.aio puts over a call's real status when a pending write fails in the
C-core (``cygrpc.InternalError``, stored by ``_AioCall.set_internal_error``)."""

CONNECT_FAILED: Final = "failed to connect to all addresses"
"""How grpc's status details start when no address could be connected to."""

# Words that show a connection failure already names TLS as its cause.
_TLS_WORDS = ("tls", "ssl", "handshake", "certificate")

# How close to the deadline a hidden INTERNAL must come to count as the deadline expiring.
_DEADLINE_SLACK = 0.05

HIDDEN_DEADLINE: Final = (
    "Deadline Exceeded (grpc reported it as INTERNAL while a write was pending)"
)
HIDDEN_BROKEN_STREAM: Final = (
    "the stream ended while a message was being written (grpc.aio hid the server's status "
    "behind INTERNAL: Internal error from Core)"
)
TLS_CONNECT_HINT: Final = (
    " [grpcstream: this is a TLS channel, so the TLS handshake may have failed: check "
    "ClientTLS ca and server_name, and give it cert and key if the server requires client "
    "certificates]"
)

STREAM_BROKEN_ERRORS: Final[tuple[type[BaseException], ...]] = (cygrpc.ExecuteBatchError,)
"""What a server's ``context.write()`` raises when the client has left (sometimes before
``context.cancelled()`` turns True); the class has no public name."""

_STATUS_FROM_CORE: Final = {code.value[0]: code for code in grpc.StatusCode}


class _TimedCall(Protocol):
    def time_remaining(self) -> float | None: ...


def is_hidden_internal(code: grpc.StatusCode, details: str | None) -> bool:
    """True for the INTERNAL that grpc.aio reports over a call's real status."""
    return code is grpc.StatusCode.INTERNAL and details == CORE_INTERNAL


def translate(
    code: grpc.StatusCode,
    details: str | None,
    trailing_metadata: object,
    *,
    call: _TimedCall | None = None,
    tls: bool = False,
) -> RpcError:
    """The typed error for a non-OK status of a client call.

    grpc.aio reports ``INTERNAL: Internal error from Core`` instead of the real status when
    a write waiting for flow control fails. Close to the call's deadline that is the
    ``DeadlineExceeded`` it is; otherwise the write met a stream that had just ended, and
    the honest answer is ``Unknown`` (never retried; sending handles then wait for the
    real status, see ``_client_status``). On a TLS channel a connection failure that does
    not name TLS gets a hint that the handshake may be the cause.

    Args:
        code: a non-OK status code.
        details: the status message.
        trailing_metadata: the trailers, as grpc returns them.
        call: the call, to read how much of its deadline is left.
        tls: the call runs on a TLS channel made by ``connect(tls=)``.
    """
    if is_hidden_internal(code, details):
        metadata = to_metadata(trailing_metadata)
        remaining = call.time_remaining() if call is not None else None
        if remaining is not None and remaining <= _DEADLINE_SLACK:
            return DeadlineExceeded(
                HIDDEN_DEADLINE,
                trailing_metadata=metadata,
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        return Unknown(HIDDEN_BROKEN_STREAM, trailing_metadata=metadata)
    if (
        tls
        and code is grpc.StatusCode.UNAVAILABLE
        and details is not None
        and details.startswith(CONNECT_FAILED)
        and not any(word in details.lower() for word in _TLS_WORDS)
    ):
        details += TLS_CONNECT_HINT
    return rpc_error(code, details, trailing_metadata)


def from_aio(
    exc: grpc.aio.AioRpcError, *, call: _TimedCall | None = None, tls: bool = False
) -> RpcError:
    """``translate()`` for an ``AioRpcError`` (raise the result ``from exc``)."""
    return translate(exc.code(), exc.details(), exc.trailing_metadata(), call=call, tls=tls)


def status_now(call: grpc.aio.Call) -> tuple[grpc.StatusCode, str, object] | None:
    """The status a client call holds right now, or None while it has none.

    grpc.aio offers the status only as a coroutine, and done-callbacks must stay
    synchronous, so this reads the cython call's ``_status``.
    """
    status = call._cython_call._status  # type: ignore[attr-defined]
    if status is None:
        return None
    code = _STATUS_FROM_CORE.get(status.code(), grpc.StatusCode.UNKNOWN)
    return code, status.details() or "", status.trailing_metadata()


_MULTICALLABLES: Final = (
    grpc.aio.UnaryUnaryMultiCallable,
    grpc.aio.UnaryStreamMultiCallable,
    grpc.aio.StreamUnaryMultiCallable,
    grpc.aio.StreamStreamMultiCallable,
)

_IS_MULTICALLABLE: dict[type, bool] = {}


def context_code(
    context: grpc.aio.ServicerContext[Any, Any], default: grpc.StatusCode
) -> grpc.StatusCode:
    """The status a server call ended with, as ``ServicerContext.code()`` reports it.

    grpcio returns a ``StatusCode`` today; older releases returned the core's int, which
    is mapped. ``default`` when no status was set (a handler that returned normally).
    """
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return _STATUS_FROM_CORE.get(code, default)
    return default


def method_name(method: object) -> str:
    """The full method name (``/pkg.Service/Method``) of a grpc.aio multicallable.

    Anything else (a caller's mistake, which ``check_kind`` then reports) is named by its
    ``repr()``.
    """
    kind = type(method)
    known = _IS_MULTICALLABLE.get(kind)
    if known is None:  # isinstance() on these ABCs is slow: decide once per class
        known = _IS_MULTICALLABLE[kind] = issubclass(kind, _MULTICALLABLES)
    if not known:
        return repr(method)
    name = method._method  # type: ignore[attr-defined]
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)
