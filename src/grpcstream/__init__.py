"""grpcstream: safe, typed gRPC streaming for asyncio on top of grpc.aio.

The public API lives here; everything else is in private modules.
"""

from __future__ import annotations

from ._base import USE_CLIENT_DEFAULT, StreamState, UseClientDefault
from ._exceptions import (
    Aborted,
    AlreadyExists,
    BrokenStreamError,
    BusyStreamError,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    GrpcStreamError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RetryNotPossibleError,
    RpcError,
    StreamClosedError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    UsageError,
    WouldBlock,
)
from ._send_queue import DEFAULT_MAX_QUEUED, SendQueue, SendQueueStatistics

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "BrokenStreamError",
    "BusyStreamError",
    "Cancelled",
    "DEFAULT_MAX_QUEUED",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GrpcStreamError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryNotPossibleError",
    "RpcError",
    "SendQueue",
    "SendQueueStatistics",
    "StreamClosedError",
    "StreamState",
    "USE_CLIENT_DEFAULT",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "UsageError",
    "UseClientDefault",
    "WouldBlock",
    "__version__",
]
