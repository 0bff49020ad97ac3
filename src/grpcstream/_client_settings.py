"""What a client call handle is built from: its settings, resolved against the client's.

``StreamClient`` resolves every per-call argument (``timeout``, ``retry``,
``max_queued``, ``batching``, ...) against its own defaults once, into one
``CallSettings``; each handle takes that object instead of a long list of keywords.
``StreamOptions`` is the same set of per-call arguments as the call helpers accept them,
for their typed overloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypedDict

from ._base import MetadataArg, UseClientDefault
from ._options import Compression
from ._retry import Retrier, RetryPolicy
from ._send_queue import DEFAULT_MAX_QUEUED
from ._telemetry import NO_CALL, CallTelemetry, Telemetry

if TYPE_CHECKING:
    from ._auth import BearerToken
    from ._batching import Batching, Packer

__all__ = ["CallSettings", "ClientOptions", "SendStreamOptions", "StreamOptions"]


@dataclass(frozen=True, slots=True)
class CallSettings:
    """The settings of one call, resolved against the client's defaults.

    Attributes:
        name: the full method name, for errors, task names and telemetry.
        on_exit: told when the handle is done, so the client stops tracking it.
        telemetry: the call's telemetry (``NO_CALL`` when the client has none).
        tls: the channel was made by ``connect(tls=)`` (connection errors get a hint).
        timeout: the call's deadline in seconds (each attempt's, without retry).
        retrier: the call's retry state, or None when it is not retried.
        idle_timeout: seconds a read may wait for the next response, or None.
        max_queued: the send queue's bound (client and bidi streams).
        replay_limit: how many bytes of sent messages are kept to replay on a retry.
        send_type: the request class ``send()`` checks, or None not to check.
        packer: packs queued entries into batches (requests are batches).
        unbatch: the responses are batches of this; iteration yields their entries.
    """

    name: str
    on_exit: Callable[[Any], None]
    telemetry: CallTelemetry = NO_CALL
    tls: bool = False
    timeout: float | None = None
    retrier: Retrier | None = None
    idle_timeout: float | None = None
    max_queued: int = DEFAULT_MAX_QUEUED
    replay_limit: int = 0
    send_type: type | None = None
    packer: Packer[Any, Any] | None = None
    unbatch: Batching[Any, Any] | None = None

    def first_timeout(self) -> float | None:
        """The first attempt's timeout: the retrier's share of the deadline, or the call's."""
        return self.retrier.attempt_timeout() if self.retrier is not None else self.timeout

    def with_idle_timeout(self, idle_timeout: float | None) -> CallSettings:
        """These settings with ``idle_timeout`` (reads wait at most that long)."""
        return replace(self, idle_timeout=idle_timeout)


class StreamOptions(TypedDict, total=False):
    """The per-call arguments every streaming helper takes (see ``StreamClient``)."""

    timeout: float | UseClientDefault | None
    metadata: MetadataArg | UseClientDefault
    compression: Compression | UseClientDefault | None
    retry: RetryPolicy | UseClientDefault | None


class SendStreamOptions(StreamOptions, total=False):
    """The per-call arguments of the helpers whose calls have a send queue."""

    max_queued: int | UseClientDefault


class ClientOptions(TypedDict, total=False):
    """``StreamClient``'s keyword arguments besides ``timeout`` (see ``StreamClient``)."""

    metadata: MetadataArg
    max_queued: int
    retry: RetryPolicy | None
    auth: BearerToken | None
    compression: Compression | None
    telemetry: Telemetry | None
