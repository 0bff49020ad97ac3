"""StreamClient and connect(): typed calls for the four RPC patterns over one channel."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

import grpc
import grpc.aio

from ._base import USE_CLIENT_DEFAULT, UseClientDefault
from ._batching import BatchedBidiStream, BatchedCall, BatchedResponseStream, Batching, Packer
from ._calls import CallHandle, ResponseStream, UnaryCall
from ._exceptions import RpcError, StreamClosedError
from ._message_types import check_kind, import_descriptors_of, request_type, wrong_type
from ._options import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ChannelOption,
    Compression,
    KeepAlive,
    check_compression,
    message_size_options,
)
from ._retry import Retrier, RetryPolicy
from ._security import AuthMetadata, BearerToken, ClientTLS, bearer_metadata
from ._send_calls import BidiStream, ClientStream
from ._send_queue import DEFAULT_MAX_QUEUED
from ._telemetry import NO_CALL, CallTelemetry, Telemetry

if TYPE_CHECKING:
    from typing import Self

__all__ = ["MetadataArg", "StreamClient", "connect"]

StubT = TypeVar("StubT")
ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
BatchT = TypeVar("BatchT")
EntryT = TypeVar("EntryT")

MetadataArg = Sequence[tuple[str, str | bytes]]
"""Metadata as callers pass it: a sequence of ``(key, value)`` pairs; keys are lowercase."""

CLIENT_CLOSED = "the StreamClient is closed; create a new one to start calls"

# Channels connect() made with tls=: their connection failures get a TLS hint.
_TLS_CHANNELS: weakref.WeakSet[grpc.aio.Channel] = weakref.WeakSet()


# The reconnect backoff connect() sets: retry after 0.1 s, at most 1 s apart. grpc's own
# default (1 s, growing by 1.6x to 120 s) leaves a restarted server unreachable for seconds
# after it is back, and the calls a RetryPolicy retries meanwhile fail at once with "failed
# to connect to all addresses". grpc's minimum connect timeout (20 s) is left alone: it is
# how long one connection attempt may take, not a delay.
_RECONNECT_BACKOFF: tuple[ChannelOption, ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def connect(
    target: str | Sequence[str],
    *,
    keepalive: KeepAlive | None = KeepAlive(),  # noqa: B008 - immutable preset
    max_send_message_bytes: int | None = None,
    max_receive_message_bytes: int | None = None,
    options: Sequence[ChannelOption] = (),
    tls: ClientTLS | None = None,
    grpc_retries: bool = False,
    load_balancing: Literal["pick_first", "round_robin"] = "pick_first",
) -> grpc.aio.Channel:
    """Open a grpc.aio channel with grpcstream's presets.

    The channel connects lazily, on the first call. Use it as ``async with connect(...)``
    or close it with ``await channel.close()``. After losing its server, the channel tries
    to reconnect after 0.1 s, then backs off to at most 1 s between tries (grpc alone
    starts at 1 s and grows to 120 s), so a
    restarted server is found within about a second, well inside the default
    ``RetryPolicy``'s patience. ``options=`` can override it.

    Args:
        target: ``host:port`` (or any gRPC target URI, such as ``dns:///logs:50051``,
            whose name may resolve to several addresses), or a list of ``ip:port``
            addresses of replicas (``["127.0.0.1:50051", "127.0.0.2:50051"]``).
        keepalive: the client keepalive preset (pings every 30 s while calls are open;
            see [`KeepAlive`][grpcstream.KeepAlive]). ``None`` disables keepalive pings.
        max_send_message_bytes: the largest message this client sends (default 4 MiB).
        max_receive_message_bytes: the largest message it accepts (default 4 MiB).
        options: extra raw grpc channel options; they override the presets.
        tls: a ``ClientTLS`` for an encrypted channel; ``None`` means plaintext.
        grpc_retries: keep grpc's own retries (service-config ``retryPolicy`` and
            transparent retries). Off by default: ``RetryPolicy`` is the one retry layer,
            so attempts never multiply (3 grpc attempts inside each of 5 grpcstream
            attempts would be 15).
        load_balancing: how calls are spread over the addresses the target gives:
            ``"pick_first"`` (the default: every call on the first address that
            connects) or ``"round_robin"`` (a connection to every address, calls in
            turn over those that are up, so a replica that goes away gets no new calls).

    Returns:
        A ``grpc.aio.Channel`` (an async context manager).

    Raises:
        ValueError: a size or keepalive value that is not positive, an unknown
            ``load_balancing``, or an address list that is empty or not ``ip:port``.
        TypeError: ``tls`` that is not a ``ClientTLS``.
    """
    if tls is not None and not isinstance(tls, ClientTLS):
        raise TypeError(f"tls must be a grpcstream.ClientTLS or None, got {type(tls).__name__}")
    if load_balancing not in ("pick_first", "round_robin"):
        raise ValueError(
            f"load_balancing must be 'pick_first' or 'round_robin', got {load_balancing!r}"
        )
    if not isinstance(target, str):
        target = addresses_target(target)
    merged: list[ChannelOption] = []
    if load_balancing != "pick_first":
        merged.append(("grpc.lb_policy_name", load_balancing))
    if keepalive is not None:
        merged.extend(keepalive.channel_options())
    if max_send_message_bytes is None:
        max_send_message_bytes = DEFAULT_MAX_MESSAGE_BYTES  # grpc alone would not limit it
    merged.extend(message_size_options(max_send_message_bytes, max_receive_message_bytes))
    if not grpc_retries:
        merged.append(("grpc.enable_retries", 0))
    merged.extend(_RECONNECT_BACKOFF)
    merged.extend(options)
    if tls is not None:
        credentials, tls_options = tls.channel_credentials()
        merged.extend(tls_options)
        channel = grpc.aio.secure_channel(target, credentials, options=merged)
        _TLS_CHANNELS.add(channel)
        return channel
    return grpc.aio.insecure_channel(target, options=merged)


def addresses_target(addresses: Sequence[str]) -> str:
    """One gRPC target for several ``ip:port`` addresses (``ipv4:a:p,b:p`` / ``ipv6:``)."""
    if isinstance(addresses, bytes) or not addresses:
        raise ValueError(
            f"target must be a str or a non-empty list of 'ip:port', got {addresses!r}"
        )
    families: set[str] = set()
    parts: list[str] = []
    for address in addresses:
        if not isinstance(address, str):
            raise ValueError(f"addresses must be 'ip:port' strings, got {address!r}")
        host, sep, port = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if not sep or ip is None or not port.isdigit():
            raise ValueError(
                f"{address!r} is not 'ip:port'; for a name that resolves to several"
                " addresses, pass one target such as 'dns:///logs.internal:50051'"
            )
        families.add(f"ipv{ip.version}")
        parts.append(f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}")
    if len(families) > 1:
        raise ValueError(f"addresses mix IPv4 and IPv6, which one target cannot: {addresses!r}")
    return f"{families.pop()}:{','.join(parts)}"


class StreamClient(Generic[StubT]):
    """Typed calls for all four RPC patterns on one channel.

    Args:
        channel: a grpc.aio channel, usually from [`connect()`][grpcstream.connect].
        stub_factory: the generated stub class (``logs_pb2_grpc.LogServiceStub``).
        timeout: the default deadline of every call, in seconds; ``None`` (the default)
            means no deadline. Each call may override it.
        metadata: metadata sent with every call. A call's own ``metadata=`` is added after
            it (it does not replace it; a key given in both is sent with both values).
        max_queued: the default send-queue bound of client and bidi streams
            (``DEFAULT_MAX_QUEUED``, 64 messages).
        retry: the default ``RetryPolicy`` (``None``: calls are not retried).
        auth: a ``BearerToken`` whose ``authorization`` header is added to every call
            and every retry attempt (its token callable runs each time, so it may
            refresh). ``None`` (the default) adds nothing.
        compression: how the requests of every call are compressed
            (``Compression.Gzip``, ...); ``None`` (the default) leaves it to the channel
            (uncompressed unless ``connect(options=...)`` sets a default). Each call may
            override it.
        telemetry: a ``Telemetry`` that records metrics and a span for every call (and
            sends trace context in its metadata); ``None`` (the default) records nothing.

    Raises:
        ValueError: a ``timeout`` that is not positive, ``max_queued`` below 1, or an
            invalid metadata key.
        TypeError: metadata that is not a sequence of ``(str, str | bytes)`` pairs,
            ``auth`` that is not a ``BearerToken``, or ``telemetry`` not a ``Telemetry``.

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
        retry: RetryPolicy | None = None,
        auth: BearerToken | None = None,
        compression: Compression | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if auth is not None and not isinstance(auth, BearerToken):
            raise TypeError(f"auth must be a grpcstream.BearerToken or None, got {auth!r}")
        if telemetry is not None and not isinstance(telemetry, Telemetry):
            raise TypeError(f"telemetry must be a grpcstream.Telemetry or None, got {telemetry!r}")
        self._telemetry = telemetry
        _check_timeout(timeout)
        _check_retry(retry)
        _check_max_queued(max_queued)
        _check_metadata(metadata)
        check_compression(compression)
        self._compression = compression
        self._channel = channel
        import_descriptors_of(stub_factory)
        self._request_types: dict[str, type | None] = {}
        self._stub = stub_factory(channel)
        self._timeout = timeout
        self._metadata = tuple(metadata)
        self._max_queued = max_queued
        self._retry = retry
        self._auth = auth
        self._tls = channel in _TLS_CHANNELS
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
        compression: Compression | UseClientDefault | None = USE_CLIENT_DEFAULT,
        retry: RetryPolicy | UseClientDefault | None = USE_CLIENT_DEFAULT,
    ) -> RespT:
        """Make one request-response call, retried according to ``retry``.

        Args:
            compression: this call's request compression (default: the client's).
            retry: the ``RetryPolicy`` for this call (default: the client's; ``None``:
                no retry). Its ``deadline`` bounds all attempts together; each attempt's
                timeout is the smaller of ``timeout`` and what is left of it.

        Raises:
            RpcError: the server's non-OK status as its typed subclass (``Unavailable``,
                ``DeadlineExceeded`` when ``timeout`` expires, ...) once no retry is left;
                ``Internal`` if the response could not be deserialized.
            StreamClosedError: the client was closed.
            ValueError: a ``timeout`` that is not a positive number (or None), or a
                metadata key that is not lowercase ``[0-9a-z_.-]``.
            TypeError: metadata that is not a sequence of ``(str, str | bytes)`` pairs.
            UsageError: ``method`` is not the kind this helper calls (the message names
                the right helper); no RPC was started.
            TypeError: ``request`` is not the method's request class; no RPC was
                started.

        Cancellation: cancelling the awaiting task cancels the RPC (and stops retrying).
        """
        check_kind(method, "unary", _method_name(method))
        policy = self._retry_for(retry)
        if policy is None:
            return await self.unary_call(
                method, request, timeout=timeout, metadata=metadata, compression=compression
            )
        name = _method_name(method)
        telemetry = self._telemetry
        observer = NO_CALL if telemetry is None else telemetry._instruments.retry_counter(name)
        retrier = Retrier(policy, name, self._timeout_for(timeout), observer)
        while True:
            try:
                return await self.unary_call(
                    method,
                    request,
                    timeout=retrier.attempt_timeout(),
                    metadata=metadata,
                    compression=compression,
                )
            except RpcError as error:
                if not await retrier.backoff(error):
                    raise

    def unary_call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[ReqT, RespT],
        request: ReqT,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
        compression: Compression | UseClientDefault | None = USE_CLIENT_DEFAULT,
    ) -> UnaryCall[RespT]:
        """Start a request-response call and return its handle at once.

        ``await`` the handle for the response; its ``initial_metadata()``,
        ``trailing_metadata()``, ``code()`` and ``details()`` stay readable afterwards.
        ``await client.unary(...)`` is the short form when only the response matters.
        ``compression=`` overrides the client's request compression for this call.

        Raises:
            StreamClosedError: the client was closed.
            ValueError: a ``timeout`` that is not a positive number (or None), or a
                metadata key that is not lowercase ``[0-9a-z_.-]``.
            TypeError: metadata that is not a sequence of ``(str, str | bytes)`` pairs.
            UsageError: ``method`` is not the kind this helper calls (the message names
                the right helper); no RPC was started.

        Also raises ``TypeError`` when ``request`` is not the method's request class;
        no RPC is started. The awaited handle raises what
        [`unary()`][grpcstream.StreamClient.unary] raises.
        """
        self._check_open()
        name = _method_name(method)
        check_kind(method, "unary_call", name)
        self._check_request(name, request)
        timeout_s = self._timeout_for(timeout)
        call_metadata = self._metadata_for(metadata)
        packing = self._compression_for(compression)
        tc = self._call_telemetry(name)
        auth = self._auth.fetch() if self._auth is not None else None
        if auth is None or isinstance(auth, tuple):
            call = method(
                request,
                timeout=timeout_s,
                metadata=tc.inject(_with_auth(call_metadata, auth)),
                compression=packing,
            )
            return self._track(UnaryCall(name, call, self._forget), tc)

        def start(token: object) -> grpc.aio.UnaryUnaryCall[Any, RespT]:
            metadata = tc.inject(_with_auth(call_metadata, bearer_metadata(token)))
            self._check_open()
            return method(request, timeout=timeout_s, metadata=metadata, compression=packing)

        # An async token source: the call starts as soon as the token is there.
        token = asyncio.ensure_future(auth)
        return self._track(UnaryCall.opening(name, token, start, self._forget), tc)

    @overload
    def server_stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[ReqT, RespT],
        request: ReqT,
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        resume: Callable[[ReqT, RespT], ReqT] | None = ...,
        idle_timeout: float | None = ...,
        batching: None = ...,
    ) -> ResponseStream[RespT]: ...

    @overload
    def server_stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[ReqT, BatchT],
        request: ReqT,
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        resume: Callable[[ReqT, EntryT], ReqT] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
    ) -> ResponseStream[EntryT]: ...

    def server_stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[ReqT, Any],
        request: ReqT,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
        compression: Compression | UseClientDefault | None = USE_CLIENT_DEFAULT,
        retry: RetryPolicy | UseClientDefault | None = USE_CLIENT_DEFAULT,
        resume: Callable[[ReqT, Any], ReqT] | None = None,
        idle_timeout: float | None = None,
        batching: Batching[Any, Any] | None = None,
    ) -> ResponseStream[Any]:
        """Start a server-streaming call; use the result as ``async with ... as entries``.

        Nothing is sent until the block is entered. See
        [`ResponseStream`][grpcstream.ResponseStream].

        Args:
            compression: this call's request compression (default: the client's).
            retry: the ``RetryPolicy`` (default: the client's; ``None``: no retry).
                Without ``resume`` a failure is retried only before the first response.
            resume: ``resume(request, last_response)`` returns the request that continues
                the stream after ``last_response`` (for example with ``after_seq``); with
                it, failures after partial delivery are retried with no loss and no
                duplicates.
            idle_timeout: seconds a read may wait for the next response. When none comes
                in time the call is cancelled and iteration raises ``IdleTimeout`` (an
                ``Unavailable``), which the retry policy retries and ``resume`` continues.
                For quiet streams, pair it with server heartbeats sent more often than
                that. ``None`` (the default): wait for ever.
            batching: the method's responses are batches of this [`Batching`][grpcstream.Batching]:
                iteration yields their entries one by one, and ``resume`` receives the
                last *entry*, so a resumed stream continues right after it.

        Raises:
            StreamClosedError: the client was closed.
            ValueError: a ``timeout`` or ``idle_timeout`` that is not a positive number
                (or None), or a metadata key that is not lowercase ``[0-9a-z_.-]``.
            TypeError: metadata that is not a sequence of ``(str, str | bytes)`` pairs,
                or ``batching`` that is not a ``Batching``.
            UsageError: ``method`` is not the kind this helper calls (the message names
                the right helper); no RPC was started. Also: ``batching`` names a batch
                type the method does not return.
            TypeError: ``request`` is not the method's request class; no RPC was
                started.
        """
        self._check_open()
        name = _method_name(method)
        check_kind(method, "server_stream", name)
        self._check_request(name, request)
        timeout_s = self._timeout_for(timeout)
        idle = _check_idle_timeout(idle_timeout)
        call_metadata = self._metadata_for(metadata)
        packing = self._compression_for(compression)
        policy = self._retry_for(retry)
        if batching is not None:
            _check_batching(batching)._check_call(name, "server_stream")
        tc = self._call_telemetry(name)

        async def open_call(
            last: Any | None, attempt_timeout: float | None
        ) -> grpc.aio.UnaryStreamCall[Any, Any]:
            metadata = tc.inject(await self._attempt_metadata(call_metadata))
            message = request if last is None or resume is None else resume(request, last)
            return method(message, timeout=attempt_timeout, metadata=metadata, compression=packing)

        retrier = None if policy is None else Retrier(policy, name, timeout_s, tc)
        stream: ResponseStream[Any] = (
            ResponseStream if batching is None else BatchedResponseStream
        )(
            name,
            open_call,
            self._forget,
            retrier=retrier,
            resumable=resume is not None,
            timeout=timeout_s,
        )
        stream._idle_timeout = idle
        if batching is not None:
            stream = cast(BatchedResponseStream[Any], stream)._unbatch(batching)
        return self._track(stream, tc)

    @overload
    def client_stream(
        self,
        method: grpc.aio.StreamUnaryMultiCallable[ReqT, RespT],
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        max_queued: int | UseClientDefault = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        batching: None = ...,
    ) -> ClientStream[ReqT, RespT]: ...

    @overload
    def client_stream(
        self,
        method: grpc.aio.StreamUnaryMultiCallable[BatchT, RespT],
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        max_queued: int | UseClientDefault = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        batching: Batching[BatchT, EntryT],
    ) -> ClientStream[EntryT, RespT]: ...

    def client_stream(
        self,
        method: grpc.aio.StreamUnaryMultiCallable[Any, RespT],
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
        compression: Compression | UseClientDefault | None = USE_CLIENT_DEFAULT,
        max_queued: int | UseClientDefault = USE_CLIENT_DEFAULT,
        retry: RetryPolicy | UseClientDefault | None = USE_CLIENT_DEFAULT,
        batching: Batching[Any, Any] | None = None,
    ) -> ClientStream[Any, RespT]:
        """Start a client-streaming call; use the result as ``async with ... as upload``.

        Args:
            compression: this call's request compression (default: the client's).
            max_queued: this stream's send-queue bound (default: the client's, or
                ``batching.max_queued`` entries with ``batching``).
            retry: the ``RetryPolicy`` (default: the client's; ``None``: no retry). The
                call is replayed on a new attempt while everything sent fits
                ``RetryPolicy.replay_buffer_bytes`` and no response has arrived.
            batching: the method's requests are batches of this [`Batching`][grpcstream.Batching]:
                ``send()`` takes entries, and the writer packs everything queued into
                each batch.

        Raises:
            StreamClosedError: the client was closed.
            ValueError: a ``timeout`` that is not a positive number (or None), or a
                metadata key that is not lowercase ``[0-9a-z_.-]``.
            TypeError: metadata that is not a sequence of ``(str, str | bytes)`` pairs.
            UsageError: ``method`` is not the kind this helper calls (the message names
                the right helper); no RPC was started.
            ValueError: ``max_queued`` below 1.
            UsageError: ``batching`` names a batch type the method does not take.
        """
        setup = self._sender_setup(
            "client_stream", method, timeout, metadata, max_queued, retry, compression, batching
        )
        stream: ClientStream[Any, RespT] = ClientStream(
            setup.name,
            setup.open_call,
            self._forget,
            setup.max_queued,
            retrier=setup.retrier,
            replay_limit=setup.replay_limit,
            timeout=setup.timeout,
            send_type=setup.send_type,
        )
        stream._packer = setup.packer
        return self._track(stream, setup.telemetry)

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[ReqT, RespT],
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        max_queued: int | UseClientDefault = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        resume: Callable[[RespT], Iterable[ReqT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: None = ...,
    ) -> BidiStream[ReqT, RespT]: ...

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[BatchT, BatchT],
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        max_queued: int | UseClientDefault = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        resume: Callable[[EntryT], Iterable[EntryT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
    ) -> BidiStream[EntryT, EntryT]: ...

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[ReqT, BatchT],
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        max_queued: int | UseClientDefault = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        resume: Callable[[EntryT], Iterable[ReqT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
    ) -> BidiStream[ReqT, EntryT]: ...

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[BatchT, RespT],
        *,
        timeout: float | UseClientDefault | None = ...,
        metadata: MetadataArg | UseClientDefault = ...,
        compression: Compression | UseClientDefault | None = ...,
        max_queued: int | UseClientDefault = ...,
        retry: RetryPolicy | UseClientDefault | None = ...,
        resume: Callable[[RespT], Iterable[EntryT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
    ) -> BidiStream[EntryT, RespT]: ...

    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[Any, Any],
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        metadata: MetadataArg | UseClientDefault = USE_CLIENT_DEFAULT,
        compression: Compression | UseClientDefault | None = USE_CLIENT_DEFAULT,
        max_queued: int | UseClientDefault = USE_CLIENT_DEFAULT,
        retry: RetryPolicy | UseClientDefault | None = USE_CLIENT_DEFAULT,
        resume: Callable[[Any], Iterable[Any]] | None = None,
        idle_timeout: float | None = None,
        batching: Batching[Any, Any] | None = None,
    ) -> BidiStream[Any, Any]:
        """Start a bidirectional call; use the result as ``async with ... as follow``.

        Args:
            compression: this call's request compression (default: the client's).
            max_queued: this stream's send-queue bound (default: the client's).
            retry: the ``RetryPolicy`` (default: the client's; ``None``: no retry).
                Before any response, a failure is retried by replaying what was sent.
            resume: ``resume(last_response)`` returns the messages that re-open the
                conversation on a new attempt; with it, failures after responses arrived
                are retried too.
            idle_timeout: seconds a read may wait for the next response before the call
                is cancelled and iteration raises ``IdleTimeout`` (an ``Unavailable``:
                retried, and continued by ``resume``). ``None`` (the default): no limit.
            batching: applies to each direction whose wire type is the batch type:
                ``send()`` takes entries and/or iteration yields entries.

        Raises:
            StreamClosedError: the client was closed.
            ValueError: a ``timeout`` that is not a positive number (or None), or a
                metadata key that is not lowercase ``[0-9a-z_.-]``.
            TypeError: metadata that is not a sequence of ``(str, str | bytes)`` pairs.
            UsageError: ``method`` is not the kind this helper calls (the message names
                the right helper); no RPC was started.
            ValueError: ``max_queued`` below 1.
            UsageError: ``batching`` names a batch type the method carries in neither
                direction.
        """
        idle = _check_idle_timeout(idle_timeout)
        setup = self._sender_setup(
            "bidi_stream", method, timeout, metadata, max_queued, retry, compression, batching
        )
        unbatch = setup.batching is not None and setup.responses
        stream: BidiStream[Any, Any] = (BatchedBidiStream if unbatch else BidiStream)(
            setup.name,
            setup.open_call,
            self._forget,
            setup.max_queued,
            retrier=setup.retrier,
            replay_limit=setup.replay_limit,
            timeout=setup.timeout,
            resume=resume,
            send_type=setup.send_type,
        )
        stream._idle_timeout = idle
        stream._packer = setup.packer
        if unbatch and setup.batching is not None:
            stream = cast(BatchedBidiStream[Any, Any], stream)._unbatch(setup.batching)
        return self._track(stream, setup.telemetry)

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel every stream still open and refuse new calls. Idempotent.

        Tasks iterating or sending on those streams get ``Cancelled``; their
        ``async with`` blocks then clean up as usual. Starting a call afterwards raises
        ``StreamClosedError``.
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
        """How many calls of this client are not finished yet (created or in their block)."""
        return len(self._open)

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosedError(CLIENT_CLOSED)

    def _track(self, handle: _HandleT, telemetry: CallTelemetry = NO_CALL) -> _HandleT:
        handle._tls = self._tls
        handle._telemetry = telemetry
        telemetry.bind(handle)
        self._open.add(handle)
        return handle

    def _forget(self, handle: CallHandle) -> None:
        handle._telemetry.finish(handle)
        self._open.discard(handle)

    def _call_telemetry(self, name: str) -> CallTelemetry:
        if self._telemetry is None:
            return NO_CALL
        return self._telemetry._instruments.client_call(name)

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
            _check_metadata(metadata)
            combined = self._metadata + tuple(metadata)
        return combined or None

    async def _attempt_metadata(self, call_metadata: CallMetadata | None) -> CallMetadata | None:
        """The metadata of one attempt: the call's, plus a freshly fetched token with auth."""
        self._check_open()
        if self._auth is None:
            return call_metadata
        metadata = await _fresh_auth(call_metadata, self._auth)
        self._check_open()  # the client may have closed while the token came
        return metadata

    def _sender_setup(
        self,
        helper: str,
        method: Callable[..., _CallT],
        timeout: float | UseClientDefault | None,
        metadata: MetadataArg | UseClientDefault,
        max_queued: int | UseClientDefault,
        retry: RetryPolicy | UseClientDefault | None,
        compression: Compression | UseClientDefault | None,
        batching: Batching[Any, Any] | None = None,
    ) -> _SenderSetup[_CallT]:
        """What ``client_stream()`` and ``bidi_stream()`` build their handles from."""
        self._check_open()
        name = _method_name(method)
        check_kind(method, helper, name)
        timeout_s = self._timeout_for(timeout)
        call_metadata = self._metadata_for(metadata)
        packing = self._compression_for(compression)
        requests = responses = False
        if batching is not None:
            requests, responses = _check_batching(batching)._check_call(name, helper)

        tc = self._call_telemetry(name)

        async def open_call(attempt_timeout: float | None) -> _CallT:
            call_options = tc.inject(await self._attempt_metadata(call_metadata))
            call = method(timeout=attempt_timeout, metadata=call_options, compression=packing)
            if batching is None or not requests:
                return call
            return BatchedCall(call, batching)  # type: ignore[return-value]

        if batching is not None and requests and isinstance(max_queued, UseClientDefault):
            bound = batching.max_queued
        else:
            bound = self._max_queued_for(max_queued)
        policy = self._retry_for(retry)
        return _SenderSetup(
            name=name,
            open_call=open_call,
            max_queued=bound,
            telemetry=tc,
            retrier=None if policy is None else Retrier(policy, name, timeout_s, tc),
            replay_limit=0 if policy is None else policy.replay_buffer_bytes,
            timeout=timeout_s,
            # With batched requests the packer checks entries; the request class is the batch.
            send_type=None if requests else self._request_type(name),
            packer=batching._packer() if batching is not None and requests else None,
            batching=batching,
            responses=responses,
        )

    def _compression_for(
        self, compression: Compression | UseClientDefault | None
    ) -> Compression | None:
        if isinstance(compression, UseClientDefault):
            return self._compression
        check_compression(compression)
        return compression

    def _request_type(self, name: str) -> type | None:
        try:
            return self._request_types[name]
        except KeyError:
            found = self._request_types[name] = request_type(name)
            return found

    def _check_request(self, name: str, request: object) -> None:
        expected = self._request_type(name)
        if (
            expected is not None
            and type(request) is not expected
            and not isinstance(request, expected)
        ):
            wrong_type(request, expected, name)

    def _retry_for(self, retry: RetryPolicy | UseClientDefault | None) -> RetryPolicy | None:
        if isinstance(retry, UseClientDefault):
            return self._retry
        _check_retry(retry)
        return retry

    def _max_queued_for(self, max_queued: int | UseClientDefault) -> int:
        if isinstance(max_queued, UseClientDefault):
            return self._max_queued
        _check_max_queued(max_queued)
        return max_queued


_HandleT = TypeVar("_HandleT", bound=CallHandle)
_CallT = TypeVar("_CallT")


@dataclass(frozen=True, slots=True)
class _SenderSetup(Generic[_CallT]):
    """The settings of one client or bidi stream, resolved against the client's defaults."""

    name: str
    open_call: Callable[[float | None], Awaitable[_CallT]]
    max_queued: int
    telemetry: CallTelemetry
    retrier: Retrier | None
    replay_limit: int
    timeout: float | None
    send_type: type | None
    packer: Packer[Any, Any] | None = None
    batching: Batching[Any, Any] | None = None
    responses: bool = False  # the responses are batches of ``batching``


CallMetadata = tuple[tuple[str, str | bytes], ...]


def _with_auth(metadata: CallMetadata | None, auth: AuthMetadata | None) -> CallMetadata | None:
    if not auth:
        return metadata
    return (metadata or ()) + auth


async def _fresh_auth(metadata: CallMetadata | None, auth: BearerToken) -> CallMetadata | None:
    fetched = auth.fetch()
    if not isinstance(fetched, tuple):
        fetched = bearer_metadata(await fetched)
    return _with_auth(metadata, fetched)


def _check_batching(batching: object) -> Batching[Any, Any]:
    if not isinstance(batching, Batching):
        raise TypeError(f"batching must be a grpcstream.Batching or None, got {batching!r}")
    return batching


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")


def _check_retry(retry: object) -> None:
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a grpcstream.RetryPolicy or None, got {retry!r}")


def _check_max_queued(max_queued: int) -> None:
    if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
        raise ValueError(f"max_queued must be an int >= 1, got {max_queued!r}")


_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+")


def _check_metadata(metadata: object) -> None:
    """Reject metadata grpc would refuse with an obscure error (or only in the C-core log).

    Raises:
        TypeError: not a sequence of ``(str, str | bytes)`` pairs, or a ``-bin`` key whose
            value is not bytes.
        ValueError: a key that is not lowercase ``[0-9a-z_.-]``.
    """
    if isinstance(metadata, str | bytes) or not isinstance(metadata, Sequence):
        raise TypeError(f"metadata must be a sequence of (key, value) pairs, got {metadata!r}")
    for item in metadata:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"metadata items must be (key, value) pairs, got {item!r}")
        key, value = item
        if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
            raise ValueError(f"metadata keys must be lowercase [0-9a-z_.-] strings, got {key!r}")
        if key.endswith("-bin"):
            if not isinstance(value, bytes):
                raise TypeError(f"metadata key {key!r} ends in -bin: its value must be bytes")
        elif not isinstance(value, str | bytes):
            raise TypeError(f"metadata value for {key!r} must be str or bytes, got {value!r}")


def _method_name(method: object) -> str:
    name = getattr(method, "_method", None)
    if isinstance(name, bytes):
        return name.decode(errors="replace")
    return str(name) if name is not None else repr(method)


def _check_idle_timeout(idle_timeout: float | None) -> float | None:
    if idle_timeout is None:
        return None
    if (
        isinstance(idle_timeout, bool)
        or not isinstance(idle_timeout, int | float)
        or not idle_timeout > 0
    ):
        raise ValueError(f"idle_timeout must be a positive number of seconds, got {idle_timeout!r}")
    return float(idle_timeout)
