"""RedisStreams: the configuration that switches a Broadcast's log to a Redis stream.

Only configuration lives here, so ``grpcstream.RedisStreams`` can be imported (and shown
in the docs) without redis-py; the backend itself (``_broadcast_redis``) imports redis-py
when a Broadcast is built with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from ._validate import positive_count, positive_seconds

__all__ = ["RedisStreams", "redacted_url"]

URL_SCHEMES: Final = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class RedisStreams:
    """Keep a [`Broadcast`][grpcstream.Broadcast] log in a Redis stream shared by every replica.

    ``Broadcast(LogEntry, backend=RedisStreams("redis://redis:6379/0", "logs"))``. Every
    process that builds a Broadcast on the same ``url`` and ``stream`` shares one log:
    publishers in any process append to it, and each serving process (a replica) runs
    one ``XREAD BLOCK`` loop that feeds all of its subscribers. Positions are the
    sequence part of the stream ids (position ``p`` is id ``0-p``), so a subscriber's
    ``sub.position`` is valid on every replica. Needs the ``grpcstream[redis]`` extra
    and Redis 7.0 or newer.

    Args:
        url: where Redis is: ``redis://[user:password@]host:port/db``, ``rediss://``
            (TLS) or ``unix:///path/to/socket``.
        stream: the stream's key. The publishers' idempotency records live next to it,
            under ``<stream>:publishers``.
        tail: read the stream and serve subscribers (a replica). ``False`` for a process
            that only publishes: it runs no read loop and cannot be subscribed to.
        position_field: the name of an integer field of the entry type that replicas set
            to the entry's position when they read it (``"seq"`` for ``LogEntry``), so a
            client's ``resume`` hook can take the position from the last entry.
        timeout: seconds one Redis command may take before the connection counts as
            lost (and, at ``start()``, how long to try to reach Redis).
        publish_timeout: seconds ``apublish()`` keeps retrying, with backoff, while Redis
            is unreachable, before it raises ``Unavailable``.
        max_batch: at most this many entries per Redis round trip, for publishing (entries
            published concurrently are coalesced) and for reading.

    Raises:
        ValueError: a URL without a Redis scheme or host, an empty stream name, or a
            bound that is not positive.
    """

    url: str
    stream: str
    tail: bool = True
    position_field: str | None = None
    timeout: float = 5.0
    publish_timeout: float = 10.0
    max_batch: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise ValueError(f"url must be a str like 'redis://host:6379/0', got {self.url!r}")
        parts = urlsplit(self.url)
        if parts.scheme not in URL_SCHEMES:
            raise ValueError(
                f"not a Redis URL: {redacted_url(self.url)!r} (expected redis://host:port/db,"
                " rediss://... or unix:///path)"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"the Redis URL {redacted_url(self.url)!r} names no host")
        if not isinstance(self.stream, str) or not self.stream:
            raise ValueError(f"stream must be a non-empty str, got {self.stream!r}")
        positive_seconds("timeout", self.timeout)
        positive_seconds("publish_timeout", self.publish_timeout)
        positive_count("max_batch", self.max_batch)


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
