"""Small shared types: the per-call default sentinel, metadata, and the async-with base."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final

from typing_extensions import override

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "USE_CLIENT_DEFAULT",
    "AsyncResource",
    "Metadata",
    "MetadataArg",
    "UseClientDefault",
    "to_metadata",
]

Metadata = tuple[tuple[str, str | bytes], ...]
"""Metadata as grpcstream returns it: an immutable sequence of ``(key, value)`` pairs."""

MetadataArg = Sequence[tuple[str, str | bytes]]
"""Metadata as callers pass it: a sequence of ``(key, value)`` pairs; keys are lowercase."""


def to_metadata(pairs: object) -> Metadata:
    """``Metadata`` from what grpc hands out: any iterable of pairs, or ``None``."""
    if pairs is None:
        return ()
    return tuple((str(item[0]), item[1]) for item in pairs)  # type: ignore[attr-defined]


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


class AsyncResource:
    """``async with`` for objects whose ``_aenter()`` opens and ``_aexit(exc)`` finishes."""

    __slots__ = ()

    async def _aenter(self) -> None:
        """Open the resource; overridden where entering does work."""

    async def _aexit(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self._aenter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._aexit(exc)
