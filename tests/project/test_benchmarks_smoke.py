"""The benchmark harnesses run end to end in tiny mode (they prove the code, not the speed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.microbench import measure_all
from benchmarks.run import grpcstream_available
from benchmarks.scenarios import SCENARIOS
from tests.support.servers import REPO_ROOT


def run_tiny(module: str, output_dir: Path, document: str) -> dict[str, Any]:
    """Run ``python -m module --tiny`` writing to ``output_dir``; return its JSON ``document``."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--tiny", "--output-dir", str(output_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    loaded: dict[str, Any] = json.loads((output_dir / document).read_text())
    return loaded


def positive(value: object) -> bool:
    """A measured figure: a finite number above zero (not NaN, not inf, not a placeholder)."""
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_tiny_benchmark_run_writes_every_scenario(tmp_path: Path) -> None:
    document = run_tiny("benchmarks.run", tmp_path, "latest.json")
    assert document["skipped"] == []
    impls = ["raw", "grpcstream"] if grpcstream_available() else ["raw"]
    assert document["impls"] == impls
    measured = {(run["scenario"], run["impl"]) for run in document["runs"]}
    expected = {(s.key, impl) for s in SCENARIOS for impl in impls if impl in s.impls}
    assert measured == expected
    assert all(run["messages"] > 0 and positive(run["elapsed_s"]) for run in document["runs"])

    table = (tmp_path / "latest.md").read_text()
    assert "| 1 | server-streaming throughput |" in table
    assert "Event loop: asyncio" in table
    if grpcstream_available():
        coalescing = document["coalescing"]
        variants = {(row["scenario"], row["variant"]) for row in coalescing["summary"]}
        assert ("server_stream", "raw batching loop") in variants
        assert ("client_stream", "grpcstream coalescing") in variants
        assert ("bidi_pipelined", "raw per-message") in variants
        assert ("producers_16", "grpcstream coalescing") in variants
        assert ("light_load", "grpcstream per-message") in variants
        assert all(positive(row["entries_per_s"]) for row in coalescing["summary"])
        assert all(run["entries"] > 0 for run in coalescing["runs"])
        assert len(coalescing["sweep"]) == 5
        assert all(positive(point["entries_per_s"]) for point in coalescing["sweep"])
        assert "## Coalescing (issue 16)" in table


@pytest.mark.slow
def test_tiny_broadcast_benchmark_writes_every_figure(tmp_path: Path) -> None:
    document = run_tiny("benchmarks.broadcast", tmp_path, "broadcast.json")
    assert [row["subscribers"] for row in document["publish"]] == [1, 100, 1000]
    assert all(positive(row["idle_us"]) for row in document["publish"])
    assert {(run["impl"], run["subscribers"]) for run in document["fanout"]} == {
        (impl, n) for impl in ("queues", "broadcast") for n in (10, 100)
    }
    assert all(
        run["delivered"] == run["subscribers"] * (50 if run["subscribers"] == 10 else 5)
        for run in document["fanout"]
    )
    assert all(positive(run["rate"]) for run in document["fanout"])
    assert document["memory"]["bytes_per_subscriber"] > 0
    assert "## Fan-out throughput over gRPC" in (tmp_path / "broadcast.md").read_text()


async def test_microbench_measures_every_building_block() -> None:
    lines = await measure_all(count=200, rounds=1)
    values = {what: value for what, value, _ in lines}
    assert [what for what, _, _ in lines][:3] == [
        "awaited write, plain",
        "SendQueue.send, queue full (bulk stream)",
        "SendQueue.send, idle writer woken per message (ping-pong)",
    ]
    assert len(values) == len(lines)  # one row per building block
    # What was timed or measured directly is a real figure ...
    direct, queued, handoff = (values[what] for what, _, _ in lines[:3])
    assert all(positive(value) for value in (direct, queued, handoff))
    assert positive(values["memory per SendQueue with a parked writer task"])
    # ... and an overhead row is the difference of the rows it names (it can be negative
    # on a noisy machine, but never NaN or infinite).
    assert values["SendQueue overhead, bulk"] == queued - direct
    assert values["SendQueue overhead, per hand-off (incl. an Event)"] == handoff - direct
    assert all(math.isfinite(value) for value in values.values())
    assert {unit for _, _, unit in lines} <= {"µs/msg", "µs/use", "µs/call", "bytes"}


@pytest.mark.slow
def test_tiny_scale_out_benchmark_compares_redis_with_in_memory(tmp_path: Path) -> None:
    results = run_tiny("benchmarks.scale_out", tmp_path, "scale_out.json")["results"]
    assert [(r["backend"], r["replicas"]) for r in results] == [
        ("in-memory", 1),
        ("Redis Streams", 3),
    ]
    assert all(positive(r["entries_per_second"]) for r in results)
    assert all(0 < r["latency_p50_ms"] <= r["latency_p99_ms"] for r in results)
    assert "Added latency through Redis" in (tmp_path / "scale_out.md").read_text()


def test_telemetry_benchmark_runs_in_its_tiny_mode(tmp_path: Path) -> None:
    document = run_tiny("benchmarks.telemetry", tmp_path, "telemetry.json")
    assert {row["variant"] for row in document["rows"]} == {"off", "no_provider", "sdk"}
    assert all(
        positive(cpu) and positive(rate)
        for row in document["rows"]
        for cpu, rate in zip(row["cpu_us_per_msg"], row["msgs_per_s"], strict=True)
    )
    ratios = document["ratios"]
    assert set(ratios) == {"long streams/off", "long streams/no_provider", "long streams/sdk"}
    assert ratios["long streams/off"] == 1.0  # the baseline the others are divided by
    assert all(positive(ratio) for ratio in ratios.values())
    assert set(document["hooks_us_per_rpc"]) == {"no_provider", "sdk"}
    assert all(positive(cost) for cost in document["hooks_us_per_rpc"].values())
    assert "| long streams (4 streams x 50) | sdk |" in (tmp_path / "telemetry.md").read_text()
