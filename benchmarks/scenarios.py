"""The scenarios, their sizes, and the measurement done inside the client process.

Each scenario runs in the client process: it reads the client's CPU clock and the
server process's CPU clock (through psutil) right around the measured section, so the
figures cover exactly the messages counted. Every loop is bounded twice: by a message
count and by a deadline (``CHECK_EVERY`` messages between deadline checks).
"""

from __future__ import annotations

import abc
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Final, Literal

import psutil

from .common import Impl, cpu_seconds, monotonic

__all__ = [
    "CHECK_EVERY",
    "SCENARIOS",
    "IdleStreams",
    "RunResult",
    "Scenario",
    "ScenarioClient",
    "Size",
    "measure",
    "sizes_for",
]

CHECK_EVERY: Final = 256
"""Messages between two deadline checks in the hot loops (a clock read is not free)."""

Size = Literal["default", "quick", "tiny"]
Kind = Literal[
    "server_stream",
    "client_stream",
    "bidi_pipelined",
    "ping_pong",
    "unary",
    "producers",
    "idle_streams",
]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One line of the results table.

    Attributes:
        key: stable identifier used in the JSON output.
        number: the scenario's number in issue 7.
        title: human-readable name.
        kind: which client method runs it.
        impls: implementations that can run it (scenario 6 is grpcstream only).
        concurrency: calls in flight (unary) or producer tasks (scenario 6).
    """

    key: str
    number: int
    title: str
    kind: Kind
    impls: tuple[Impl, ...] = ("raw", "grpcstream")
    concurrency: int = 1


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("server_stream", 1, "server-streaming throughput", "server_stream"),
    Scenario("client_stream", 2, "client-streaming throughput", "client_stream"),
    Scenario("bidi_pipelined", 3, "bidi pipelined throughput", "bidi_pipelined"),
    Scenario("ping_pong", 4, "bidi ping-pong round trip", "ping_pong"),
    Scenario("unary_sequential", 5, "unary, sequential", "unary"),
    Scenario("unary_32", 5, "unary, 32 in flight", "unary", concurrency=32),
    Scenario(
        "producers_16",
        6,
        "server streaming, 16 producer tasks on one stream",
        "producers",
        impls=("grpcstream",),
        concurrency=16,
    ),
    Scenario("idle_streams", 7, "1,000 idle server streams", "idle_streams"),
)


@dataclass(frozen=True, slots=True)
class Sizes:
    """Message counts per run and the time cap of one run, for one run size."""

    counts: dict[str, int]
    time_cap: float
    repeats: int


_DEFAULT_COUNTS: Final = {
    "server_stream": 200_000,
    "client_stream": 100_000,
    "bidi_pipelined": 100_000,
    "ping_pong": 4_000,
    "unary_sequential": 2_000,
    "unary_32": 10_000,
    "producers_16": 200_000,
    "idle_streams": 1_000,
}


def sizes_for(size: Size) -> Sizes:
    """Counts, time cap per run and repeats for a run size."""
    if size == "default":
        return Sizes(counts=dict(_DEFAULT_COUNTS), time_cap=3.0, repeats=3)
    if size == "quick":
        counts = {key: max(500, value // 10) for key, value in _DEFAULT_COUNTS.items()}
        counts["idle_streams"] = 200
        return Sizes(counts=counts, time_cap=1.0, repeats=3)
    counts = {key: 300 for key in _DEFAULT_COUNTS}
    counts["idle_streams"] = 20
    return Sizes(counts=counts, time_cap=1.0, repeats=1)


@dataclass(slots=True)
class IdleStreams:
    """Streams held open by ``ScenarioClient.open_idle_streams``."""

    opened: int
    close: Callable[[], Awaitable[None]]


class ScenarioClient(abc.ABC):
    """What each implementation (raw grpc.aio, grpcstream) provides to the client process.

    Each method runs one scenario and returns how many messages it completed: it stops at
    ``count`` or soon after ``deadline`` (a ``monotonic()`` value), whichever comes first.
    """

    @abc.abstractmethod
    async def connect(self) -> None:
        """Wait until the channel is ready and one call succeeded."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the channel."""

    @abc.abstractmethod
    async def server_stream(self, count: int, deadline: float) -> int:
        """Receive ``count`` log entries on one server stream."""

    @abc.abstractmethod
    async def client_stream(self, count: int, deadline: float) -> int:
        """Send ``count`` log entries on one client stream; return what the server counted."""

    @abc.abstractmethod
    async def bidi_pipelined(self, count: int, deadline: float) -> int:
        """Write and read concurrently on one bidi stream; return the replies received."""

    @abc.abstractmethod
    async def ping_pong(self, count: int, deadline: float) -> list[int]:
        """Send one request and wait for its reply, ``count`` times; return latencies in ns."""

    @abc.abstractmethod
    async def unary(self, count: int, concurrency: int, deadline: float) -> int:
        """Make ``count`` unary calls with ``concurrency`` in flight."""

    @abc.abstractmethod
    async def producers(self, count: int, producers: int, deadline: float) -> int:
        """Receive ``count`` entries sent by ``producers`` server tasks on one stream."""

    @abc.abstractmethod
    async def open_idle_streams(self, count: int, deadline: float) -> IdleStreams:
        """Open ``count`` server streams and wait for the first message on each."""


@dataclass(slots=True)
class RunResult:
    """The raw figures of one run of one scenario, as written to latest.json."""

    scenario: str
    impl: str
    loop: str
    repeat: int
    messages: int
    elapsed_s: float
    client_cpu_s: float
    server_cpu_s: float
    p50_us: float | None = None
    p99_us: float | None = None
    server_rss_per_stream: float | None = None
    client_rss_per_stream: float | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-serializable dict of every field."""
        return asdict(self)


def _percentile(sorted_values: list[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


async def measure(
    client: ScenarioClient,
    scenario: Scenario,
    *,
    count: int,
    time_cap: float,
    server_pid: int,
    impl: str,
    loop: str,
    repeat: int,
) -> RunResult:
    """Run one scenario once and measure it (called inside the client process)."""
    server = psutil.Process(server_pid)

    def server_cpu() -> float:
        times = server.cpu_times()
        return float(times.user + times.system)

    if scenario.kind == "idle_streams":
        return await _measure_idle(client, scenario, count, time_cap, server, impl, loop, repeat)

    latencies: list[int] = []
    server_cpu_start = server_cpu()
    cpu_start = cpu_seconds()
    start = monotonic()
    deadline = start + time_cap
    if scenario.kind == "server_stream":
        done = await client.server_stream(count, deadline)
    elif scenario.kind == "client_stream":
        done = await client.client_stream(count, deadline)
    elif scenario.kind == "bidi_pipelined":
        done = await client.bidi_pipelined(count, deadline)
    elif scenario.kind == "ping_pong":
        latencies = await client.ping_pong(count, deadline)
        done = len(latencies)
    elif scenario.kind == "unary":
        done = await client.unary(count, scenario.concurrency, deadline)
    else:
        done = await client.producers(count, scenario.concurrency, deadline)
    elapsed = monotonic() - start
    cpu = cpu_seconds() - cpu_start
    server_cpu_used = server_cpu() - server_cpu_start
    result = RunResult(
        scenario=scenario.key,
        impl=impl,
        loop=loop,
        repeat=repeat,
        messages=done,
        elapsed_s=elapsed,
        client_cpu_s=cpu,
        server_cpu_s=server_cpu_used,
    )
    if latencies:
        latencies.sort()
        result.p50_us = _percentile(latencies, 0.50) / 1000
        result.p99_us = _percentile(latencies, 0.99) / 1000
    return result


async def _measure_idle(
    client: ScenarioClient,
    scenario: Scenario,
    count: int,
    time_cap: float,
    server: psutil.Process,
    impl: str,
    loop: str,
    repeat: int,
) -> RunResult:
    me = psutil.Process()
    start = monotonic()
    deadline = start + max(time_cap, 10.0)  # opening 1,000 streams on a busy box takes time
    # Warm-up streams first, so the baseline already includes per-process one-off costs.
    warm = await client.open_idle_streams(16, deadline)
    server_rss_before = server.memory_info().rss
    client_rss_before = me.memory_info().rss
    server_cpu_start = sum(server.cpu_times()[:2])
    cpu_start = cpu_seconds()
    idle = await client.open_idle_streams(count, deadline)
    elapsed = monotonic() - start
    server_rss_after = server.memory_info().rss
    client_rss_after = me.memory_info().rss
    cpu = cpu_seconds() - cpu_start
    server_cpu_used = sum(server.cpu_times()[:2]) - server_cpu_start
    await idle.close()
    await warm.close()
    return RunResult(
        scenario=scenario.key,
        impl=impl,
        loop=loop,
        repeat=repeat,
        messages=idle.opened,
        elapsed_s=elapsed,
        client_cpu_s=cpu,
        server_cpu_s=server_cpu_used,
        server_rss_per_stream=(server_rss_after - server_rss_before) / max(1, idle.opened),
        client_rss_per_stream=(client_rss_after - client_rss_before) / max(1, idle.opened),
    )


def median(values: list[float]) -> float:
    """The median (shared by the runner's summary)."""
    return float(statistics.median(values))
