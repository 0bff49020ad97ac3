"""Broadcast instruments for ``grpcstream.Telemetry`` (the ``otel`` extra).

Every number is read from ``log.statistics()`` and the subscriptions' own counters when
the SDK collects, so publishing and delivering record nothing. The only attribute is the
name the application gave the log: one series per observed log, none per subscriber.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from ._broadcast import Broadcast

__all__ = ["BroadcastObserver"]

ENTRIES: Final = "grpcstream.broadcast.entries"
SIZE: Final = "grpcstream.broadcast.size"
PUBLISHED: Final = "grpcstream.broadcast.published"
SUBSCRIBERS: Final = "grpcstream.broadcast.subscribers"
LAG: Final = "grpcstream.broadcast.subscriber.lag"
DROPPED: Final = "grpcstream.broadcast.subscriber.dropped"

NAME: Final = "grpcstream.broadcast.name"


class BroadcastObserver:
    """The logs passed to ``Telemetry.observe_broadcast()``, by name (held weakly)."""

    def __init__(self) -> None:
        self._logs: dict[str, weakref.ref[Broadcast[Any]]] = {}
        self._attrs: dict[str, dict[str, str]] = {}

    def add(self, log: Broadcast[Any], name: str) -> None:
        known = self._logs.get(name)
        current = known() if known is not None else None
        if current is not None and current is not log:
            raise ValueError(f"another Broadcast is already observed as {name!r}")
        self._logs[name] = weakref.ref(log)
        self._attrs[name] = {NAME: name}

    def register(self, meter: Meter) -> None:
        def gauge(
            name: str, unit: str, description: str, value: Callable[[Broadcast[Any]], int]
        ) -> None:
            meter.create_observable_gauge(
                name, [self._callback(value)], unit=unit, description=description
            )

        gauge(ENTRIES, "{entry}", "Entries held in the log.", lambda log: log.statistics().entries)
        gauge(
            SIZE,
            "By",
            "Bytes held in the log (0 unless it has max_bytes).",
            lambda log: log.statistics().bytes,
        )
        gauge(
            SUBSCRIBERS,
            "{subscriber}",
            "Open subscriptions.",
            lambda log: log.statistics().subscribers,
        )
        gauge(LAG, "{entry}", "Entries the slowest open subscriber has not read.", _max_lag)
        meter.create_observable_counter(
            PUBLISHED,
            [self._callback(lambda log: log.statistics().published)],
            unit="{entry}",
            description="Entries published.",
        )
        meter.create_observable_counter(
            DROPPED,
            [self._callback(lambda log: log._dropped)],
            unit="{entry}",
            description="Entries subscribers skipped (drop_oldest, or a gap), summed.",
        )

    def _callback(
        self, value: Callable[[Broadcast[Any]], int]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            found: list[Observation] = []
            for name, ref in tuple(self._logs.items()):
                log = ref()
                if log is None:
                    continue  # collected: its series stops
                found.append(Observation(value(log), self._attrs[name]))
            return found

        return observe


def _max_lag(log: Broadcast[Any]) -> int:
    # The callback may run on an exporter's thread while the loop adds a subscriber.
    for _ in range(3):
        try:
            subscribers = tuple(log._subscribers)
            break
        except RuntimeError:  # pragma: no cover - "changed size during iteration"
            continue
    else:  # pragma: no cover
        return 0
    return max((sub.statistics().lag for sub in subscribers), default=0)
