"""StreamClient: typed calls for the four RPC patterns over one channel.

Each call helper resolves its arguments against the client's defaults into one
``CallSettings`` and returns the handle for its pattern (``_client_unary``,
``_client_receive``, ``_client_send``, ``_client_bidi``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import grpc
import grpc.aio
from typing_extensions import Unpack, override

from ._auth import BearerToken, bearer_metadata
from ._base import USE_CLIENT_DEFAULT, AsyncResource, MetadataArg, UseClientDefault
from ._batching import BatchedCall, Batching, check_batching
from ._client_bidi import BidiStream
from ._client_defaults import ClientDefaults, with_auth
from ._client_handle import CallHandle
from ._client_receive import ResponseStream
from ._client_send import ClientStream
from ._client_settings import CallSettings, SendStreamOptions, StreamOptions
from ._client_unary import UnaryCall
from ._exceptions import RpcError
from ._grpc_compat import method_name
from ._message_types import check_kind, import_descriptors_of
from ._options import Compression
from ._retry import Retrier, RetryPolicy
from ._send_queue import DEFAULT_MAX_QUEUED
from ._telemetry import NO_CALL, Telemetry
from ._validate import (
    optional_seconds,
)

if TYPE_CHECKING:
    pass

__all__ = ["StreamClient"]

StubT = TypeVar("StubT")
ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
BatchT = TypeVar("BatchT")
EntryT = TypeVar("EntryT")
_HandleT = TypeVar("_HandleT", bound=CallHandle[Any])
_CallT = TypeVar("_CallT")


class StreamClient(AsyncResource, Generic[StubT]):
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
        self._defaults = ClientDefaults(
            channel,
            self._forget,
            timeout=timeout,
            metadata=metadata,
            max_queued=max_queued,
            retry=retry,
            auth=auth,
            compression=compression,
            telemetry=telemetry,
        )
        self._channel = channel
        import_descriptors_of(stub_factory)
        self._stub = stub_factory(channel)
        self._open: weakref.WeakSet[CallHandle[Any]] = weakref.WeakSet()

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
        name = method_name(method)
        check_kind(method, "unary", name)
        policy = self._defaults.retry_for(retry)
        if policy is None:
            return await self.unary_call(
                method, request, timeout=timeout, metadata=metadata, compression=compression
            )
        telemetry = self._defaults.telemetry
        observer = NO_CALL if telemetry is None else telemetry._instruments.retry_counter(name)
        retrier = Retrier(policy, name, self._defaults.timeout_for(timeout), observer)
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
        self._defaults.check_open()
        name = method_name(method)
        check_kind(method, "unary_call", name)
        self._defaults.check_request(name, request)
        timeout_s = self._defaults.timeout_for(timeout)
        call_metadata = self._defaults.metadata_for(metadata)
        packing = self._defaults.compression_for(compression)
        settings = self._defaults.settings(name, timeout=timeout_s)
        tc = settings.telemetry
        auth = self._defaults.auth.fetch() if self._defaults.auth is not None else None
        if auth is None or isinstance(auth, tuple):
            call = method(
                request,
                timeout=timeout_s,
                metadata=tc.inject(with_auth(call_metadata, auth)),
                compression=packing,
            )
            return self._track(UnaryCall(settings, call))

        def start(token: object) -> grpc.aio.UnaryUnaryCall[Any, RespT]:
            metadata = tc.inject(with_auth(call_metadata, bearer_metadata(token)))
            self._defaults.check_open()
            return method(request, timeout=timeout_s, metadata=metadata, compression=packing)

        # An async token source: the call starts as soon as the token is there.
        token = asyncio.ensure_future(auth)
        return self._track(UnaryCall.opening(settings, token, start))

    @overload
    def server_stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[ReqT, RespT],
        request: ReqT,
        *,
        resume: Callable[[ReqT, RespT], ReqT] | None = ...,
        idle_timeout: float | None = ...,
        batching: None = ...,
        **options: Unpack[StreamOptions],
    ) -> ResponseStream[RespT]: ...

    @overload
    def server_stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[ReqT, BatchT],
        request: ReqT,
        *,
        resume: Callable[[ReqT, EntryT], ReqT] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
        **options: Unpack[StreamOptions],
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
        self._defaults.check_open()
        name = method_name(method)
        check_kind(method, "server_stream", name)
        self._defaults.check_request(name, request)
        if batching is not None:
            check_batching(batching)._check_call(name, "server_stream")
        timeout_s = self._defaults.timeout_for(timeout)
        call_metadata = self._defaults.metadata_for(metadata)
        packing = self._defaults.compression_for(compression)
        settings = self._defaults.settings(
            name,
            timeout=timeout_s,
            retry=self._defaults.retry_for(retry),
            idle_timeout=optional_seconds("idle_timeout", idle_timeout),
            unbatch=batching,
        )
        tc = settings.telemetry

        async def open_call(
            last: Any | None, attempt_timeout: float | None
        ) -> grpc.aio.UnaryStreamCall[Any, Any]:
            metadata = tc.inject(await self._defaults.attempt_metadata(call_metadata))
            message = request if last is None or resume is None else resume(request, last)
            return method(message, timeout=attempt_timeout, metadata=metadata, compression=packing)

        return self._track(ResponseStream(settings, open_call, resumable=resume is not None))

    @overload
    def client_stream(
        self,
        method: grpc.aio.StreamUnaryMultiCallable[ReqT, RespT],
        *,
        batching: None = ...,
        **options: Unpack[SendStreamOptions],
    ) -> ClientStream[ReqT, RespT]: ...

    @overload
    def client_stream(
        self,
        method: grpc.aio.StreamUnaryMultiCallable[BatchT, RespT],
        *,
        batching: Batching[BatchT, EntryT],
        **options: Unpack[SendStreamOptions],
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
        settings, open_call = self._sender_settings(
            "client_stream", method, timeout, metadata, max_queued, retry, compression, batching
        )
        return self._track(ClientStream(settings, open_call))

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[ReqT, RespT],
        *,
        resume: Callable[[RespT], Iterable[ReqT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: None = ...,
        **options: Unpack[SendStreamOptions],
    ) -> BidiStream[ReqT, RespT]: ...

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[BatchT, BatchT],
        *,
        resume: Callable[[EntryT], Iterable[EntryT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
        **options: Unpack[SendStreamOptions],
    ) -> BidiStream[EntryT, EntryT]: ...

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[ReqT, BatchT],
        *,
        resume: Callable[[EntryT], Iterable[ReqT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
        **options: Unpack[SendStreamOptions],
    ) -> BidiStream[ReqT, EntryT]: ...

    @overload
    def bidi_stream(
        self,
        method: grpc.aio.StreamStreamMultiCallable[BatchT, RespT],
        *,
        resume: Callable[[RespT], Iterable[EntryT]] | None = ...,
        idle_timeout: float | None = ...,
        batching: Batching[BatchT, EntryT],
        **options: Unpack[SendStreamOptions],
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
        settings, open_call = self._sender_settings(
            "bidi_stream", method, timeout, metadata, max_queued, retry, compression, batching
        )
        settings = settings.with_idle_timeout(optional_seconds("idle_timeout", idle_timeout))
        return self._track(BidiStream(settings, open_call, resume=resume))

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel every stream still open and refuse new calls. Idempotent.

        Tasks iterating or sending on those streams get ``Cancelled``; their
        ``async with`` blocks then clean up as usual. Starting a call afterwards raises
        ``StreamClosedError``.
        """
        self._defaults.closed = True
        for handle in list(self._open):
            handle.cancel()

    @override
    async def _aexit(self, exc: BaseException | None) -> None:
        await self.aclose()

    @property
    def open_streams(self) -> int:
        """How many calls of this client are not finished yet (created or in their block)."""
        return len(self._open)

    # -- helpers ---------------------------------------------------------------------------

    def _track(self, handle: _HandleT) -> _HandleT:
        handle._telemetry.bind(handle)
        self._open.add(handle)
        return handle

    def _forget(self, handle: CallHandle[Any]) -> None:
        handle._telemetry.finish(handle)
        self._open.discard(handle)

    def _sender_settings(
        self,
        helper: str,
        method: Callable[..., _CallT],
        timeout: float | UseClientDefault | None,
        metadata: MetadataArg | UseClientDefault,
        max_queued: int | UseClientDefault,
        retry: RetryPolicy | UseClientDefault | None,
        compression: Compression | UseClientDefault | None,
        batching: Batching[Any, Any] | None,
    ) -> tuple[CallSettings, Callable[[float | None], Awaitable[_CallT]]]:
        """What ``client_stream()`` and ``bidi_stream()`` build their handles from."""
        self._defaults.check_open()
        name = method_name(method)
        check_kind(method, helper, name)
        requests = responses = False
        if batching is not None:
            requests, responses = check_batching(batching)._check_call(name, helper)
        call_metadata = self._defaults.metadata_for(metadata)
        packing = self._defaults.compression_for(compression)
        if requests and batching is not None and isinstance(max_queued, UseClientDefault):
            bound = batching.max_queued
        else:
            bound = self._defaults.max_queued_for(max_queued)
        policy = self._defaults.retry_for(retry)
        settings = self._defaults.settings(
            name,
            timeout=self._defaults.timeout_for(timeout),
            retry=policy,
            max_queued=bound,
            replay_limit=0 if policy is None else policy.replay_buffer_bytes,
            # With batched requests the packer checks entries; the request class is the batch.
            send_type=None if requests else self._defaults.request_type(name),
            packer=batching._packer() if batching is not None and requests else None,
            unbatch=batching if responses else None,
        )
        tc = settings.telemetry

        async def open_call(attempt_timeout: float | None) -> _CallT:
            call_options = tc.inject(await self._defaults.attempt_metadata(call_metadata))
            call = method(timeout=attempt_timeout, metadata=call_options, compression=packing)
            if batching is None or not requests:
                return call
            return BatchedCall(call, batching)  # type: ignore[return-value]

        return settings, open_call
