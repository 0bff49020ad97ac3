"""Small shared types: the per-call default sentinel and the stream state machine."""

from __future__ import annotations

import enum
from typing import Final

from typing_extensions import override

__all__ = ["USE_CLIENT_DEFAULT", "StreamState", "UseClientDefault"]


class UseClientDefault(enum.Enum):
    """Type of ``USE_CLIENT_DEFAULT``: "not given, use the client's default".

    It differs from ``None``, which means "none" (``timeout=None`` disables the deadline).
    """

    USE_CLIENT_DEFAULT = "USE_CLIENT_DEFAULT"

    @override
    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = UseClientDefault.USE_CLIENT_DEFAULT
"""Per-call argument default meaning "use the value configured on the StreamClient"."""


class StreamState(enum.Enum):
    """Where a stream is in its life. Transitions only go forward.

    IDLE -> OPEN -> HALF_CLOSED -> CLOSED, and any state -> CLOSED on error or cancel.
    """

    IDLE = "idle"
    OPEN = "open"
    HALF_CLOSED = "half_closed"
    CLOSED = "closed"
