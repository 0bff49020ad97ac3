"""Argument checks shared by the client, the server and the options.

Each raises the error an experienced Python user expects (``ValueError`` for a value out
of range, ``TypeError`` for a value of the wrong kind) with a message naming the argument,
before anything reaches grpc, which would refuse it with an obscure error or only in the
C-core log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import grpc

__all__ = [
    "check_compression",
    "check_instance",
    "check_metadata",
    "non_negative_seconds",
    "optional_seconds",
    "positive_count",
    "positive_seconds",
]

_T = TypeVar("_T")

_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def positive_seconds(name: str, value: object) -> float:
    """``value`` as seconds.

    Raises:
        ValueError: ``value`` is not a positive number.
    """
    seconds = _number(value)
    if seconds is None or not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def optional_seconds(name: str, value: object) -> float | None:
    """``value`` as seconds, or None (no limit).

    Raises:
        ValueError: ``value`` is neither None nor a positive number.
    """
    if value is None:
        return None
    seconds = _number(value)
    if seconds is None or not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return seconds


def non_negative_seconds(name: str, value: object) -> float:
    """``value`` as seconds, where 0 means "at once".

    Raises:
        ValueError: ``value`` is not a number >= 0.
    """
    seconds = _number(value)
    if seconds is None or not seconds >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return seconds


def positive_count(name: str, value: object) -> int:
    """``value`` as a count of at least 1 (a queue bound, a limit).

    Raises:
        ValueError: ``value`` is not an int >= 1.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def check_instance(name: str, value: object, cls: type[_T]) -> _T | None:
    """``value`` if it is a ``cls`` or None.

    Raises:
        TypeError: anything else; the message names ``grpcstream.<cls>``.
    """
    if value is not None and not isinstance(value, cls):
        raise TypeError(f"{name} must be a grpcstream.{cls.__name__} or None, got {value!r}")
    return value


def check_compression(compression: object) -> None:
    """Raise TypeError unless ``compression`` is a ``Compression`` member or None."""
    if compression is not None and not isinstance(compression, grpc.Compression):
        raise TypeError(
            f"compression must be a grpcstream.Compression or None, got {compression!r}"
        )


def check_metadata(metadata: object) -> None:
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
