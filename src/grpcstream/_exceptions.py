"""The grpcstream error hierarchy and the one boundary that translates grpc errors.

```
GrpcStreamError
├── RpcError(code, details, trailing_metadata)   one subclass per non-OK status
├── UsageError(RuntimeError)                     API misuse
│     ├── StreamClosedError
│     └── BusyStreamError
├── RetryNotPossibleError                        a retryable failure that could not be retried
├── BrokenStreamError                            the call ended underneath a sender
└── WouldBlock                                   send_nowait on a full queue
```

No raw ``grpc.aio.AioRpcError`` reaches users: ``_grpc_compat`` is the one boundary
where grpc's statuses and errors become these classes (``rpc_error()`` builds them), with
the original chained as ``__cause__``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import grpc
from typing_extensions import override

from ._base import Metadata, to_metadata

# The public names are re-exported, and listed, by grpcstream/__init__.py.

StatusCode = grpc.StatusCode
"""The gRPC status codes (``grpc.StatusCode``), so that ``handle.code()`` can be compared
without importing grpc: ``await call.code() is grpcstream.StatusCode.OK``."""

SEND_AFTER_CLOSE = "send() after close_send(): the stream is half-closed and nothing was sent"
SEND_ON_CLOSED = "send() on a stream that has ended: nothing was sent"


class GrpcStreamError(Exception):
    """Root of every error grpcstream raises."""


class UsageError(GrpcStreamError, RuntimeError):
    """The API was used in a way it does not allow (a programming error, not a remote one)."""


class StreamClosedError(UsageError):
    """The sending side was closed by the caller; the operation did nothing.

    Raised by ``send()``/``send_nowait()`` after ``close_send()``, and by a closed
    ``StreamClient`` asked to start a call. (After ``cancel()`` sends raise ``Cancelled``;
    a call that the peer ended raises ``BrokenStreamError`` or its status.)
    """


class BusyStreamError(UsageError):
    """Two tasks tried to do something only one task may do at a time (e.g. iterate one stream)."""


class RetryNotPossibleError(GrpcStreamError):
    """A call failed with a retryable status, but the stream could not be retried.

    Raised instances are also the failure's own status class, so ``except Unavailable``
    still catches them: ``retry_not_possible()`` builds a class that derives from both.
    The message says why it could not be retried, and ``__cause__`` is the failure.
    """


class BrokenStreamError(GrpcStreamError):
    """The call ended underneath a sender; not a misuse, and nothing more can be sent.

    On the server: the client is gone (cancelled, disconnected, past its deadline), so
    stop producing. On the client: the server ended the call with OK while this side was
    still sending (a client stream's response is still returned by
    ``close_and_receive()``). A non-OK end raises that status's ``RpcError`` instead.
    """


class WouldBlock(GrpcStreamError):
    """``send_nowait()`` found the send queue full. Use ``await send()`` to wait for room."""


class RpcError(GrpcStreamError):
    """An RPC ended with a non-OK status.

    Raise a subclass in a server handler to end the RPC with that status; catch one on the
    client to handle a remote failure. ``except grpcstream.Unavailable`` is the idiom.

    Attributes:
        code: the gRPC status code; each subclass also carries its own as a class
            attribute (``NotFound.code is StatusCode.NOT_FOUND``).
        details: the status message sent by the peer (may be empty).
        trailing_metadata: the trailers that came with the status.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        details: str = "",
        *,
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
        code: grpc.StatusCode | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.details: str = details
        self.trailing_metadata: Metadata = to_metadata(trailing_metadata)
        super().__init__(details)

    @property
    def status(self) -> grpc.StatusCode:
        """Deprecated alias of ``code``; warns with ``DeprecationWarning``."""
        warnings.warn(
            "RpcError.status is deprecated: use RpcError.code", DeprecationWarning, stacklevel=2
        )
        return self.code

    @override
    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as cls(*args); code and trailers are keyword-only here.
        return (_rebuild, (type(self), self.details, self.trailing_metadata, self.code))

    @override
    def __str__(self) -> str:
        name = self.code.name
        return f"{name}: {self.details}" if self.details else name

    @override
    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, details={self.details!r})"


class Cancelled(RpcError):
    """CANCELLED: the call was cancelled, usually by the caller."""

    code = grpc.StatusCode.CANCELLED


class Unknown(RpcError):
    """UNKNOWN: an error without a more specific status."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(RpcError):
    """INVALID_ARGUMENT: the client sent something the server will never accept."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(RpcError):
    """DEADLINE_EXCEEDED: the call's timeout expired before it completed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(RpcError):
    """NOT_FOUND: a requested entity does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RpcError):
    """ALREADY_EXISTS: the entity the client tried to create already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(RpcError):
    """PERMISSION_DENIED: the caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(RpcError):
    """RESOURCE_EXHAUSTED: a quota or limit (such as the maximum message size) was hit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(RpcError):
    """FAILED_PRECONDITION: the system is not in a state that allows the operation."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(RpcError):
    """ABORTED: the operation was aborted, typically by a concurrency conflict."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(RpcError):
    """OUT_OF_RANGE: the operation went past the valid range."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(RpcError):
    """UNIMPLEMENTED: the server does not implement the method."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(RpcError):
    """INTERNAL: an invariant broke inside the server or the gRPC runtime."""

    code = grpc.StatusCode.INTERNAL


class Unavailable(RpcError):
    """UNAVAILABLE: the service cannot be reached right now; usually safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE


class IdleTimeout(Unavailable):
    """No message arrived on a stream for its ``idle_timeout``: the stream was ended.

    An ``Unavailable`` (code UNAVAILABLE), so a ``RetryPolicy`` retries it and ``resume=``
    continues the stream, on this or another connection. Raised on the client from
    iteration of a stream opened with ``idle_timeout=``; on the server from iterating a
    ``RequestStream`` whose ``idle_timeout`` passed (unless the handler catches it, the
    call then ends with UNAVAILABLE and this message).
    """


IDLE_TIMEOUT = "no message for {:g} s (idle_timeout): the peer or the connection is gone"


class DataLoss(RpcError):
    """DATA_LOSS: unrecoverable data loss or corruption."""

    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(RpcError):
    """UNAUTHENTICATED: the call carried no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[RpcError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def rpc_error(
    code: grpc.StatusCode,
    details: str | None = "",
    trailing_metadata: object = None,
) -> RpcError:
    """Build the ``RpcError`` subclass for a status code.

    Args:
        code: a non-OK status code.
        details: the status message.
        trailing_metadata: trailers, as grpc returns them (any iterable of pairs) or None.

    Returns:
        An instance of the subclass registered for ``code`` (``Unknown`` for OK, which is
        not an error and should never be passed).
    """
    cls = _BY_CODE.get(code, Unknown)
    return cls(details or "", trailing_metadata=to_metadata(trailing_metadata), code=code)


_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_error(
    code: int | grpc.StatusCode,
    details: str = "",
    trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
) -> RpcError:
    """The typed error for a non-OK status code, ready to raise.

    A handler that must end its call with a status it received as data (a status number
    in a request, a status from another service) raises ``status_error(code, message)``;
    a client may build one to compare or re-raise. ``status_error(5)`` is a ``NotFound``.

    Args:
        code: a non-OK status, as its number (``2``) or a ``StatusCode`` member.
        details: the status message.
        trailing_metadata: trailers to send with the status (in a handler).

    Returns:
        An instance of the ``RpcError`` subclass for ``code``.

    Raises:
        ValueError: ``code`` is OK (0), which is not an error, or is not a gRPC status.
        TypeError: ``code`` is neither an int nor a ``StatusCode``.
    """
    if isinstance(code, grpc.StatusCode):
        status = code
    elif isinstance(code, int) and not isinstance(code, bool):
        found = _BY_NUMBER.get(code)
        if found is None:
            raise ValueError(f"{code} is not a gRPC status code (0-16)")
        status = found
    else:
        raise TypeError(f"code must be an int or a grpcstream.StatusCode, got {code!r}")
    if status is grpc.StatusCode.OK:
        raise ValueError("OK is not an error status: there is no error to raise for it")
    return rpc_error(status, details, trailing_metadata)


def _rebuild(
    cls: type[RpcError], details: str, trailing_metadata: Metadata, code: grpc.StatusCode
) -> RpcError:
    return cls(details, trailing_metadata=trailing_metadata, code=code)


def _not_retried_class(status_class: type[RpcError]) -> type[RpcError]:
    name = f"{status_class.__name__}NotRetried"
    doc = f"A ``{status_class.__name__}`` that could not be retried (``RetryNotPossibleError``)."
    combined = type(name, (RetryNotPossibleError, status_class), {"__doc__": doc})
    combined.__module__ = __name__
    return combined


# One importable class per status (``UnavailableNotRetried``, ...), defined at import
# time under its own module-level name, so instances pickle and unpickle like any class.
_NOT_RETRIED: dict[type[RpcError], type[RpcError]] = {
    status_class: _not_retried_class(status_class)
    for status_class in (*_BY_CODE.values(), IdleTimeout)
}
globals().update({cls.__name__: cls for cls in _NOT_RETRIED.values()})


def retry_not_possible(error: RpcError, reason: str) -> RpcError:
    """``error`` again, as an instance of both its status class and ``RetryNotPossibleError``.

    Args:
        error: the typed failure that could not be retried.
        reason: why, for the message (``"what was sent exceeds the replay buffer"``).
    """
    combined = _NOT_RETRIED.get(type(error)) or _NOT_RETRIED[_BY_CODE.get(error.code, Unknown)]
    details = f"{error.details} (not retried: {reason})" if error.details else reason
    return combined(details, trailing_metadata=error.trailing_metadata, code=error.code)
