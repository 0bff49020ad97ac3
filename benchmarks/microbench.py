"""Per-message costs of grpcstream's data-path pieces, without gRPC.

Run it with ``python -m benchmarks.microbench``.
The end-to-end benchmark (``benchmarks.run``) says *whether* grpcstream costs something;
this says *where*. Each line compares a grpcstream building block with the plain code it
replaces, in one process, with a fake ``write`` that suspends once (as ``call.write()``
does while the C-core works). Best of several rounds, so it is steady on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import tenacity

from grpcstream import SendQueue

__all__ = ["main", "measure_all"]


async def _fake_write(message: object) -> None:
    await asyncio.sleep(0)


async def _best_of(rounds: int, count: int, body: Callable[[int], Awaitable[None]]) -> float:
    """Best time per item, in microseconds, over ``rounds`` runs of ``body(count)``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        await body(count)
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


async def _direct_writes(count: int) -> None:
    for _ in range(count):
        await _fake_write(None)


async def _queued_writes(count: int) -> None:
    # The producer is faster than the writer: the queue stays full, as in a bulk stream.
    queue: SendQueue[None] = SendQueue(_fake_write)
    for _ in range(count):
        await queue.send(None)
    await queue.close()


async def _queued_handoffs(count: int) -> None:
    # One message at a time, each waited for: the idle writer is woken for every message,
    # as in a ping-pong. The plain equivalent is one awaited write per message.
    written = asyncio.Event()

    async def write(message: None) -> None:
        await asyncio.sleep(0)
        written.set()

    queue: SendQueue[None] = SendQueue(write)
    for _ in range(count):
        written.clear()
        await queue.send(None)
        await written.wait()
    await queue.close()


async def _plain_try(count: int) -> None:
    for _ in range(count):
        try:
            await _noop()
        except ValueError:
            raise


async def _noop() -> None:
    return None


async def _tenacity_first_attempt(count: int) -> None:
    for _ in range(count):
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(5),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10.0),
            retry=tenacity.retry_if_exception_type(OSError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await _noop()


async def _send_queue_bytes(count: int) -> float:
    """Bytes allocated per SendQueue that has sent one message and whose writer now idles."""
    queues: list[SendQueue[None]] = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(count):
            queue: SendQueue[None] = SendQueue(_fake_write)
            await queue.send(None)
            queues.append(queue)
        for _ in range(3):  # let every writer write and park on its wake-up future
            await asyncio.sleep(0)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    for queue in queues:
        await queue.aclose()
    return grown / count


async def measure_all(count: int, rounds: int) -> list[tuple[str, float, str]]:
    """Return (what, value, unit) lines."""
    direct = await _best_of(rounds, count, _direct_writes)
    queued = await _best_of(rounds, count, _queued_writes)
    handoff = await _best_of(rounds, max(1, count // 4), _queued_handoffs)
    retry_count = max(1, count // 20)
    retried = await _best_of(rounds, retry_count, _tenacity_first_attempt)
    direct_calls = await _best_of(rounds, retry_count, _plain_try)
    return [
        ("awaited write, plain", direct, "µs/msg"),
        ("SendQueue.send, queue full (bulk stream)", queued, "µs/msg"),
        ("SendQueue.send, idle writer woken per message (ping-pong)", handoff, "µs/msg"),
        ("SendQueue overhead, bulk", queued - direct, "µs/msg"),
        ("SendQueue overhead, per hand-off (incl. an Event)", handoff - direct, "µs/msg"),
        ("tenacity.AsyncRetrying, one successful attempt", retried - direct_calls, "µs/call"),
        ("memory per SendQueue with a parked writer task", await _send_queue_bytes(1000), "bytes"),
    ]


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    lines = asyncio.run(measure_all(args.count, args.rounds))
    width = max(len(what) for what, _, _ in lines)
    for what, value, unit in lines:
        print(f"{what:<{width}}  {value:10.2f} {unit}")


if __name__ == "__main__":
    main()
