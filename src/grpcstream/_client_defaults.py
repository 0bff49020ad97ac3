"""ClientDefaults: a StreamClient's settings, and how one call's arguments resolve against them.

Every call helper of ``StreamClient`` takes the same per-call overrides (``timeout=``,
``metadata=``, ``compression=``, ``retry=``, ``max_queued=``), each defaulting to
``USE_CLIENT_DEFAULT``. This object checks the client's own values once, resolves each
override against them, and builds the ``CallSettings`` a handle is made from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc.aio

from ._auth import AuthMetadata, BearerToken, bearer_metadata
from ._base import Metadata, MetadataArg, UseClientDefault
from ._client_channel import is_tls_channel
from ._client_settings import CallSettings
from ._exceptions import StreamClosedError
from ._message_types import request_type, wrong_type
from ._options import Compression
from ._retry import Retrier, RetryPolicy
from ._telemetry import NO_CALL, CallTelemetry, Telemetry
from ._validate import (
    check_compression,
    check_instance,
    check_metadata,
    optional_seconds,
    positive_count,
)

__all__ = ["CLIENT_CLOSED", "ClientDefaults", "with_auth"]

CLIENT_CLOSED = "the StreamClient is closed; create a new one to start calls"


class ClientDefaults:
    """The checked defaults of one ``StreamClient`` (see its arguments).

    Raises:
        ValueError: a ``timeout`` that is not positive, ``max_queued`` below 1, or an
            invalid metadata key.
        TypeError: metadata that is not a sequence of ``(str, str | bytes)`` pairs, or
            ``auth``, ``retry``, ``compression`` or ``telemetry`` of the wrong type.
    """

    __slots__ = (
        "auth",
        "closed",
        "compression",
        "max_queued",
        "metadata",
        "on_exit",
        "request_types",
        "retry",
        "telemetry",
        "timeout",
        "tls",
    )

    def __init__(
        self,
        channel: grpc.aio.Channel,
        on_exit: Callable[[Any], None],
        *,
        timeout: float | None,
        metadata: MetadataArg,
        max_queued: int,
        retry: RetryPolicy | None,
        auth: BearerToken | None,
        compression: Compression | None,
        telemetry: Telemetry | None,
    ) -> None:
        self.auth = check_instance("auth", auth, BearerToken)
        self.telemetry = check_instance("telemetry", telemetry, Telemetry)
        self.timeout = optional_seconds("timeout", timeout)
        self.retry = check_instance("retry", retry, RetryPolicy)
        self.max_queued = positive_count("max_queued", max_queued)
        check_metadata(metadata)
        self.metadata: Metadata = tuple(metadata)
        check_compression(compression)
        self.compression = compression
        self.tls = is_tls_channel(channel)
        self.on_exit = on_exit
        self.request_types: dict[str, type | None] = {}
        self.closed = False

    def check_open(self) -> None:
        """Raise ``StreamClosedError`` once the client is closed."""
        if self.closed:
            raise StreamClosedError(CLIENT_CLOSED)

    # -- one call's arguments ----------------------------------------------------------------

    def timeout_for(self, timeout: float | UseClientDefault | None) -> float | None:
        if isinstance(timeout, UseClientDefault):
            return self.timeout
        return optional_seconds("timeout", timeout)

    def metadata_for(self, metadata: MetadataArg | UseClientDefault) -> Metadata | None:
        if isinstance(metadata, UseClientDefault):
            combined = self.metadata
        else:
            check_metadata(metadata)
            combined = self.metadata + tuple(metadata)
        return combined or None

    def compression_for(
        self, compression: Compression | UseClientDefault | None
    ) -> Compression | None:
        if isinstance(compression, UseClientDefault):
            return self.compression
        check_compression(compression)
        return compression

    def retry_for(self, retry: RetryPolicy | UseClientDefault | None) -> RetryPolicy | None:
        if isinstance(retry, UseClientDefault):
            return self.retry
        return check_instance("retry", retry, RetryPolicy)

    def max_queued_for(self, max_queued: int | UseClientDefault) -> int:
        if isinstance(max_queued, UseClientDefault):
            return self.max_queued
        return positive_count("max_queued", max_queued)

    def request_type(self, name: str) -> type | None:
        """The request class of method ``name`` (None when it cannot be found)."""
        try:
            return self.request_types[name]
        except KeyError:
            found = self.request_types[name] = request_type(name)
            return found

    def check_request(self, name: str, request: object) -> None:
        """Raise ``TypeError`` if ``request`` is not method ``name``'s request class."""
        expected = self.request_type(name)
        if (
            expected is not None
            and type(request) is not expected
            and not isinstance(request, expected)
        ):
            wrong_type(request, expected, name)

    # -- what a handle is built from -------------------------------------------------------

    def call_telemetry(self, name: str) -> CallTelemetry:
        telemetry = self.telemetry
        return NO_CALL if telemetry is None else telemetry._instruments.client_call(name)

    def settings(
        self, name: str, *, timeout: float | None, retry: RetryPolicy | None = None, **more: Any
    ) -> CallSettings:
        """The ``CallSettings`` of one call of ``name`` (its telemetry and retry state)."""
        tc = self.call_telemetry(name)
        return CallSettings(
            name=name,
            on_exit=self.on_exit,
            telemetry=tc,
            tls=self.tls,
            timeout=timeout,
            retrier=None if retry is None else Retrier(retry, name, timeout, tc),
            **more,
        )

    async def attempt_metadata(self, call_metadata: Metadata | None) -> Metadata | None:
        """The metadata of one attempt: the call's, plus a freshly fetched token with auth."""
        self.check_open()
        if self.auth is None:
            return call_metadata
        fetched = self.auth.fetch()
        if not isinstance(fetched, tuple):
            fetched = bearer_metadata(await fetched)
        self.check_open()  # the client may have closed while the token came
        return with_auth(call_metadata, fetched)


def with_auth(metadata: Metadata | None, auth: AuthMetadata | None) -> Metadata | None:
    """``metadata`` with the ``authorization`` pair of ``auth`` added, if any."""
    if not auth:
        return metadata
    return (metadata or ()) + auth
