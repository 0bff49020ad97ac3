"""Channel and server presets: keepalive, message-size limits and similar options.

The client preset and the server's enforcement preset are chosen together: the server
accepts pings at least as often as a grpcstream client sends them, so an idle stream with
keepalive pings is never closed with GOAWAY ``too_many_pings``.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ChannelOption",
    "Compression",
    "check_compression",
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


def check_compression(compression: object) -> None:
    """Raise TypeError unless ``compression`` is a ``Compression`` member or None."""
    if compression is not None and not isinstance(compression, grpc.Compression):
        raise TypeError(
            f"compression must be a grpcstream.Compression or None, got {compression!r}"
        )


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Client keepalive: HTTP/2 pings that detect a dead connection on a quiet stream.

    The default pings every 30 s while calls are open and gives up on the connection when a
    ping is not answered within 10 s. A
    [`KeepAliveEnforcement`][grpcstream.KeepAliveEnforcement] with its default accepts this
    (it allows pings every 10 s).

    Args:
        time: seconds between pings while the connection is otherwise idle.
        timeout: seconds to wait for the ping's answer before closing the connection.
        permit_without_calls: also ping when no call is open (off by default: idle
            connections are cheap and servers often refuse such pings).

    Raises:
        ValueError: a duration that is not a positive number.
    """

    time: float = 30.0
    timeout: float = 10.0
    permit_without_calls: bool = False

    def __post_init__(self) -> None:
        _check_positive(time=self.time, timeout=self.timeout)

    def channel_options(self) -> list[ChannelOption]:
        """The grpc channel arguments for this preset."""
        return [
            ("grpc.keepalive_time_ms", _ms(self.time)),
            ("grpc.keepalive_timeout_ms", _ms(self.timeout)),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            # 0 = no limit on pings without data, so long idle streams keep pinging.
            ("grpc.http2.max_pings_without_data", 0),
        ]


@dataclass(frozen=True, slots=True)
class KeepAliveEnforcement:
    """Server keepalive: what the server accepts from clients, and its own pings.

    Args:
        min_ping_interval: the shortest interval between client pings the server accepts
            (default 10 s, below the client preset's 30 s). Clients that ping more often
            get strikes and finally GOAWAY ``too_many_pings``.
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
            ("grpc.keepalive_time_ms", _ms(self.time)),
            ("grpc.keepalive_timeout_ms", _ms(self.timeout)),
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
