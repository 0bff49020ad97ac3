"""grpcstream: safe, typed gRPC streaming for asyncio on top of grpc.aio.

The public API lives here; everything else is in private modules.
"""

from __future__ import annotations

from ._base import USE_CLIENT_DEFAULT, StreamState, UseClientDefault
from ._calls import BidiStream, CallHandle, ClientStream, ResponseStream
from ._client import MetadataArg, StreamClient, connect
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
from ._options import DEFAULT_MAX_MESSAGE_BYTES, KeepAlive, KeepAliveEnforcement
from ._send_queue import DEFAULT_MAX_QUEUED, SendQueue, SendQueueStatistics

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "BidiStream",
    "BrokenStreamError",
    "BusyStreamError",
    "CallHandle",
    "Cancelled",
    "ClientStream",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_QUEUED",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GrpcStreamError",
    "Internal",
    "InvalidArgument",
    "KeepAlive",
    "KeepAliveEnforcement",
    "MetadataArg",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "ResponseStream",
    "RetryNotPossibleError",
    "RpcError",
    "SendQueue",
    "SendQueueStatistics",
    "StreamClient",
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
    "connect",
]
