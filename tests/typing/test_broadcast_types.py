"""Broadcast infers its entry type from the class it is given, down to each entry."""

from __future__ import annotations

from typing import assert_type

import grpcstream
from grpcstream_demo.logs_pb2 import LogEntry, Status


async def test_broadcast_is_generic_over_its_entry_type() -> None:
    log = grpcstream.Broadcast(LogEntry, max_entries=10, key=lambda entry: entry.seq)
    assert_type(log, grpcstream.Broadcast[LogEntry])
    assert_type(log.publish(LogEntry(seq=1)), int)
    async with log.subscribe(after=0) as sub:
        assert_type(sub, grpcstream.Subscription[LogEntry])
        entry = await anext(sub)
        assert_type(entry, LogEntry)
        assert entry.seq == 1
    assert_type(log.statistics(), grpcstream.BroadcastStatistics)
    assert_type(sub.statistics(), grpcstream.SubscriptionStatistics)


def wrong_entry_type(log: grpcstream.Broadcast[LogEntry]) -> None:
    log.publish(Status())  # type: ignore[arg-type]
    log.subscribe(policy="fastest")  # type: ignore[arg-type]
