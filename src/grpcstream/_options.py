"""Channel and server presets: keepalive, message-size limits and similar options.

The client's default keepalive is safe against any gRPC server's default enforcement (one
ping per 5 minutes on a quiet connection); ``StreamServer``'s enforcement preset accepts
the opt-in aggressive client preset too, so a quiet stream is never closed with GOAWAY
``too_many_pings`` by either.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from ._validate import positive_seconds

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ChannelOption",
    "Compression",
    "KeepAlive",
    "KeepAliveEnforcement",
    "message_size_options",
]

ChannelOption = tuple[str, int | str]

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""gRPC's own default for received messages (4 MiB); grpcstream uses it for both directions."""


Compression = grpc.Compression
"""The message compression algorithms (``grpc.Compression``): ``NoCompression``,
``Deflate`` and ``Gzip``. Pass one as ``compression=`` to a ``StreamClient`` or one of
its calls, or to ``CallContext.set_compression()`` in a handler."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _ping_options(time: float, timeout: float) -> list[ChannelOption]:
    return [
        ("grpc.keepalive_time_ms", _ms(time)),
        ("grpc.keepalive_timeout_ms", _ms(timeout)),
        # grpc core waits this long for any ping's ack (default 60 s) and ignores the
        # keepalive timeout if it is shorter: without it, timeout= has no effect.
        ("grpc.http2.ping_timeout_ms", _ms(timeout)),
    ]


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        positive_seconds(name, value)


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Client keepalive: HTTP/2 pings that detect a dead or stalled connection.

    The default pings every 300 s (5 minutes) while calls are open and closes the
    connection when a ping is not answered within 20 s, so a stalled connection is noticed
    within about 320 s. 5 minutes is the shortest interval that grpc core's and grpc-go's
    default servers accept: they answer more frequent pings on a quiet connection with
    GOAWAY ``too_many_pings`` after three strikes, which kills quiet streams. For faster
    detection against any server, give streams an ``idle_timeout`` and have the server send
    heartbeats; against a ``StreamServer`` (which accepts pings every 10 s),
    [`KeepAlive.aggressive()`][grpcstream.KeepAlive.aggressive] notices a stall within
    about 40 s.

    Args:
        time: seconds between pings while the connection is otherwise idle.
        timeout: seconds to wait for a ping's answer before closing the connection (it
            sets both grpc's keepalive timeout and its general HTTP/2 ping timeout, which
            otherwise keeps the connection for 60 s whatever ``timeout`` says).
        permit_without_calls: also ping when no call is open (off by default: idle
            connections are cheap and servers often refuse such pings).

    Raises:
        ValueError: a duration that is not a positive number.
    """

    time: float = 300.0
    timeout: float = 20.0
    permit_without_calls: bool = False

    def __post_init__(self) -> None:
        _check_positive(time=self.time, timeout=self.timeout)

    @classmethod
    def aggressive(cls) -> KeepAlive:
        """Ping every 30 s and give up after 10 s: for servers that allow it, only.

        A [`KeepAliveEnforcement`][grpcstream.KeepAliveEnforcement] with its default
        (``StreamServer``'s) accepts it; grpc core's and grpc-go's default servers do not
        (GOAWAY ``too_many_pings`` after 90 s of a quiet stream).
        """
        return cls(time=30.0, timeout=10.0)

    def channel_options(self) -> list[ChannelOption]:
        """The grpc channel arguments for this preset."""
        return [
            *_ping_options(self.time, self.timeout),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            # 0 = no limit on pings without data, so long idle streams keep pinging.
            ("grpc.http2.max_pings_without_data", 0),
        ]


@dataclass(frozen=True, slots=True)
class KeepAliveEnforcement:
    """Server keepalive: what the server accepts from clients, and its own pings.

    Args:
        min_ping_interval: the shortest interval between client pings the server accepts
            (default 10 s, below the 30 s of ``KeepAlive.aggressive()``). Clients that ping
            more often get strikes and finally GOAWAY ``too_many_pings``.
        permit_without_calls: accept pings on connections with no open call.
        max_ping_strikes: bad pings tolerated before GOAWAY.
        time: seconds between the server's own pings to detect dead clients.
        timeout: seconds the server waits for the answer to its ping.

    Raises:
        ValueError: a duration that is not a positive number.
    """

    min_ping_interval: float = 10.0
    permit_without_calls: bool = True
    max_ping_strikes: int = 2
    time: float = 60.0
    timeout: float = 20.0

    def __post_init__(self) -> None:
        _check_positive(
            min_ping_interval=self.min_ping_interval, time=self.time, timeout=self.timeout
        )

    def accepts(self, client: KeepAlive) -> bool:
        """True if a client with this preset never gets ``too_many_pings`` from the server."""
        return client.time >= self.min_ping_interval and (
            self.permit_without_calls or not client.permit_without_calls
        )

    def server_options(self) -> list[ChannelOption]:
        """The grpc server arguments for this preset."""
        return [
            *_ping_options(self.time, self.timeout),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", _ms(self.min_ping_interval)),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.min_ping_interval)),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.http2.max_pings_without_data", 0),
        ]


def message_size_options(
    max_send_message_bytes: int | None, max_receive_message_bytes: int | None
) -> list[ChannelOption]:
    """Channel/server arguments for message-size limits (None keeps grpc's default).

    Raises:
        ValueError: a limit that is not a positive int.
    """
    options: list[ChannelOption] = []
    for key, value in (
        ("grpc.max_send_message_length", max_send_message_bytes),
        ("grpc.max_receive_message_length", max_receive_message_bytes),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key.split('.')[-1]} must be a positive int, got {value!r}")
        options.append((key, value))
    return options
