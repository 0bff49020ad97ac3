"""StreamClient and connect(): typed calls for the four RPC patterns over one channel."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import grpc.aio

from ._base import USE_CLIENT_DEFAULT, UseClientDefault
from ._calls import UNPARSEABLE, BidiStream, CallHandle, ClientStream, ResponseStream
from ._exceptions import Internal, StreamClosedError, map_grpc_errors
from ._options import ChannelOption, KeepAlive, message_size_options
from ._send_queue import DEFAULT_MAX_QUEUED

if TYPE_CHECKING:
    from typing import Self

__all__ = ["MetadataArg", "StreamClient", "connect"]

StubT = TypeVar("StubT")
ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

MetadataArg = Sequence[tuple[str, str | bytes]]
"""Metadata as callers pass it: a sequence of ``(key, value)`` pairs; keys are lowercase."""

CLIENT_CLOSED = "the StreamClient is closed; create a new one to start calls"


def connect(
    target: str,
    *,
    keepalive: KeepAlive | None = KeepAlive(),  # noqa: B008 - immutable preset
    max_send_message_bytes: int | None = None,
    max_receive_message_bytes: int | None = None,
    options: Sequence[ChannelOption] = (),
    tls: Any = None,
) -> grpc.aio.Channel:
    """Open a grpc.aio channel with grpcstream's presets.

    The channel connects lazily, on the first call. Use it as ``async with connect(...)``
    or close it with ``await channel.close()``.

    Args:
        target: ``host:port`` (or any gRPC target URI).
        keepalive: the client keepalive preset (pings every 30 s while calls are open;
            see :class:`KeepAlive`). ``None`` disables keepalive pings.
        max_send_message_bytes: the largest message this client sends (default 4 MiB).
        max_receive_message_bytes: the largest message it accepts (default 4 MiB).
        options: extra raw grpc channel options; they override the presets.
        tls: a ``ClientTLS`` for an encrypted channel; ``None`` means plaintext.

    Returns:
        A ``grpc.aio.Channel`` (an async context manager).

    Raises:
        ValueError: a size or keepalive value that is not positive.
    """
    merged: list[ChannelOption] = []
    if keepalive is not None:
        merged.extend(keepalive.channel_options())
    merged.extend(message_size_options(max_send_message_bytes, max_receive_message_bytes))
    merged.extend(options)
    if tls is not None:
        credentials, tls_options = tls.channel_credentials()
        merged.extend(tls_options)
        return grpc.aio.secure_channel(target, credentials, options=merged)
    return grpc.aio.insecure_channel(target, options=merged)


class StreamClient(Generic[StubT]):
    """Typed calls for all four RPC patterns on one channel.

    Args:
        channel: a grpc.aio channel, usually from :func:`connect`.
        stub_factory: the generated stub class (``logs_pb2_grpc.LogServiceStub``).
        timeout: the default deadline of every call, in seconds; ``None`` (the default)
            means no deadline. Each call may override it.
        metadata: metadata sent with every call; a call's own ``metadata=`` is added to it.
        max_queued: the default send-queue bound of client and bidi streams
            (``DEFAULT_MAX_QUEUED``, 64 messages).
        retry: the default ``RetryPolicy`` (``None``: calls are not retried).

    ``async with StreamClient(...)`` (or ``await client.aclose()``) cancels every stream
    that is still open when it ends. The channel is not closed: it belongs to the caller.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        stub_factory: Callable[[grpc.aio.Channel], StubT],
        *,
        timeout: float | None = None,
        metadata: MetadataArg = (),
        max_queued: int = DEFAULT_MAX_QUEUED,
        retry: object = None,
    ) -> None:
        _check_timeout(timeout)
        _check_max_queued(max_queued)
        self._channel = channel
        self._stub = stub_factory(channel)
        self._timeout = timeout
        self._metadata = tuple(metadata)
        self._max_queued = max_queued
        self._retry = retry
        self._open: weakref.WeakSet[CallHandle] = weakref.WeakSet()
        self._closed = False

    @property
    def stub(self) -> StubT:
        """The generated stub; pass its methods to the call functions."""
        return self._stub

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel this client calls on."""
        return self._channel

    # -- the four patterns -----------------------------------------------------------------

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[ReqT, RespT],
        request: ReqT,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> RespT:
        """Make one request-response call.

        Raises:
            RpcError: the server's non-OK status as its typed subclass (``Unavailable``,
                ``DeadlineExceeded`` when ``timeout`` expires, ...); ``Internal`` if the
                response could not be deserialized.
            StreamClosedError: the client was closed.

        Cancellation: cancelling the awaiting task cancels the RPC.
        """
        self._check_open()
        with map_grpc_errors():
            response = await method(
                request, timeout=self._timeout_for(timeout), metadata=self._metadata_for(metadata)
            )
        if response is None:
            # grpc.aio logs a deserializer failure and returns None instead of raising.
            raise Internal(UNPARSEABLE.format(_method_name(method)))
        return response

    def server_stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[ReqT, RespT],
        request: ReqT,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> ResponseStream[RespT]:
        """Start a server-streaming call; use the result as ``async with ... as entries``.

        Nothing is sent until the block is entered. See :class:`ResponseStream`.

        Raises:
            StreamClosedError: the client was closed.
        """
        self._check_open()
        timeout_s = self._timeout_for(timeout)
        call_metadata = self._metadata_for(metadata)

        def open_call() -> grpc.aio.UnaryStreamCall[Any, RespT]:
            self._check_open()
            return method(request, timeout=timeout_s, metadata=call_metadata)

        return self._track(ResponseStream(_method_name(method), open_call, self._forget))

    def client_stream(
        self,
        method: grpc.aio.StreamUnaryMultiCallable[ReqT, RespT],
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
        max_queued: int | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> ClientStream[ReqT, RespT]:
        """Start a client-streaming call; use the result as ``async with ... as upload``.

        Args:
            max_queued: this stream's send-queue bound (default: the client's).

        Raises:
            StreamClosedError: the client was closed.
            ValueError: ``max_queued`` below 1.
        """
        self._check_open()
        timeout_s = self._timeout_for(timeout)
        call_metadata = self._metadata_for(metadata)

        def open_call() -> grpc.aio.StreamUnaryCall[ReqT, RespT]:
            self._check_open()
            return method(timeout=timeout_s, metadata=call_metadata)

        bound = self._max_queued_for(max_queued)
        return self._track(ClientStream(_method_name(method), open_call, self._forget, bound))

    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[ReqT, RespT],
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
        max_queued: int | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> BidiStream[ReqT, RespT]:
        """Start a bidirectional call; use the result as ``async with ... as follow``.

        Args:
            max_queued: this stream's send-queue bound (default: the client's).

        Raises:
            StreamClosedError: the client was closed.
            ValueError: ``max_queued`` below 1.
        """
        self._check_open()
        timeout_s = self._timeout_for(timeout)
        call_metadata = self._metadata_for(metadata)

        def open_call() -> grpc.aio.StreamStreamCall[ReqT, RespT]:
            self._check_open()
            return method(timeout=timeout_s, metadata=call_metadata)

        bound = self._max_queued_for(max_queued)
        return self._track(BidiStream(_method_name(method), open_call, self._forget, bound))

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel every stream still open and refuse new calls. Idempotent.

        Tasks iterating or sending on those streams get ``Cancelled`` or
        ``StreamClosedError``; their ``async with`` blocks then clean up as usual.
        """
        self._closed = True
        for handle in list(self._open):
            handle.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def open_streams(self) -> int:
        """How many streams started by this client are inside their ``async with`` block."""
        return len(self._open)

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosedError(CLIENT_CLOSED)

    def _track(self, handle: _HandleT) -> _HandleT:
        self._open.add(handle)
        return handle

    def _forget(self, handle: CallHandle) -> None:
        self._open.discard(handle)

    def _timeout_for(self, timeout: float | UseClientDefault | None) -> float | None:
        if isinstance(timeout, UseClientDefault):
            return self._timeout
        _check_timeout(timeout)
        return timeout

    def _metadata_for(
        self, metadata: MetadataArg | UseClientDefault
    ) -> tuple[tuple[str, str | bytes], ...] | None:
        if isinstance(metadata, UseClientDefault):
            combined = self._metadata
        else:
            combined = self._metadata + tuple(metadata)
        return combined or None

    def _max_queued_for(self, max_queued: int | UseClientDefault) -> int:
        if isinstance(max_queued, UseClientDefault):
            return self._max_queued
        _check_max_queued(max_queued)
        return max_queued


_HandleT = TypeVar("_HandleT", bound=CallHandle)


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")


def _check_max_queued(max_queued: int) -> None:
    if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
        raise ValueError(f"max_queued must be an int >= 1, got {max_queued!r}")


def _method_name(method: object) -> str:
    name = getattr(method, "_method", None)
    if isinstance(name, bytes):
        return name.decode(errors="replace")
    return str(name) if name is not None else repr(method)
