"""grpcstream: safe, typed gRPC streaming for asyncio on top of grpc.aio.

The public API lives here; everything else is in private modules.
"""

from __future__ import annotations

from ._auth import DEFAULT_PUBLIC_SERVICES, BearerAuth, BearerToken, current_principal
from ._base import USE_CLIENT_DEFAULT, MetadataArg, UseClientDefault
from ._batching import Batching
from ._broadcast import DEFAULT_MAX_ENTRIES, Broadcast, BroadcastStatistics
from ._client import StreamClient
from ._client_bidi import BidiStream
from ._client_channel import connect
from ._client_handle import CallHandle
from ._client_receive import ResponseStream
from ._client_send import ClientStream
from ._client_unary import UnaryCall
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
    IdleTimeout,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RetryNotPossibleError,
    RpcError,
    StatusCode,
    StreamClosedError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    UsageError,
    WouldBlock,
    status_error,
)
from ._options import DEFAULT_MAX_MESSAGE_BYTES, Compression, KeepAlive, KeepAliveEnforcement
from ._redis_config import RedisStreams
from ._retry import RetryEvent, RetryPolicy
from ._send_queue import DEFAULT_MAX_QUEUED, SendQueue, SendQueueStatistics
from ._server import DEFAULT_GRACE, StreamServer
from ._server_servicer import (
    StreamServicer,
    bidi_streaming,
    client_streaming,
    server_streaming,
    unary,
)
from ._server_stream import CallContext, RequestStream, ServerStream
from ._subscription import Subscription, SubscriptionStatistics
from ._telemetry import Telemetry
from ._tls import ClientTLS, ServerTLS
from ._version import __version__

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Batching",
    "BearerAuth",
    "BearerToken",
    "BidiStream",
    "Broadcast",
    "BroadcastStatistics",
    "BrokenStreamError",
    "BusyStreamError",
    "CallContext",
    "CallHandle",
    "Cancelled",
    "ClientStream",
    "ClientTLS",
    "Compression",
    "DEFAULT_GRACE",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_QUEUED",
    "DEFAULT_PUBLIC_SERVICES",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GrpcStreamError",
    "IdleTimeout",
    "Internal",
    "InvalidArgument",
    "KeepAlive",
    "KeepAliveEnforcement",
    "MetadataArg",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "RedisStreams",
    "RequestStream",
    "ResourceExhausted",
    "ResponseStream",
    "RetryEvent",
    "RetryNotPossibleError",
    "RetryPolicy",
    "RpcError",
    "SendQueue",
    "SendQueueStatistics",
    "ServerStream",
    "ServerTLS",
    "StatusCode",
    "StreamClient",
    "StreamClosedError",
    "StreamServer",
    "StreamServicer",
    "Subscription",
    "SubscriptionStatistics",
    "Telemetry",
    "USE_CLIENT_DEFAULT",
    "UnaryCall",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "UsageError",
    "UseClientDefault",
    "WouldBlock",
    "__version__",
    "bidi_streaming",
    "client_streaming",
    "connect",
    "current_principal",
    "server_streaming",
    "status_error",
    "unary",
]
