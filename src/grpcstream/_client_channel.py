"""connect(): a grpc.aio channel with grpcstream's presets."""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Sequence
from typing import Literal

import grpc
import grpc.aio

from ._options import DEFAULT_MAX_MESSAGE_BYTES, ChannelOption, KeepAlive, message_size_options
from ._tls import ClientTLS
from ._validate import check_instance

__all__ = ["addresses_target", "connect", "is_tls_channel"]

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
    check_instance("tls", tls, ClientTLS)
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


def is_tls_channel(channel: grpc.aio.Channel) -> bool:
    """True for a channel ``connect(tls=)`` made (its connection errors get a TLS hint)."""
    return channel in _TLS_CHANNELS
