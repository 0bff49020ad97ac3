"""The benchmark harness runs end to end in its tiny mode (it proves the code, not the speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.microbench import measure_all
from benchmarks.run import grpcstream_available
from benchmarks.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_benchmark_run_writes_every_scenario(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--tiny", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    document = json.loads((tmp_path / "latest.json").read_text())
    assert document["skipped"] == []
    impls = ["raw", "grpcstream"] if grpcstream_available() else ["raw"]
    assert document["impls"] == impls
    measured = {(run["scenario"], run["impl"]) for run in document["runs"]}
    expected = {(s.key, impl) for s in SCENARIOS for impl in impls if impl in s.impls}
    assert measured == expected
    assert all(run["messages"] > 0 for run in document["runs"])

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
        assert all(run["entries"] > 0 for run in coalescing["runs"])
        assert len(coalescing["sweep"]) == 5
        assert "## Coalescing (issue 16)" in table


@pytest.mark.slow
def test_tiny_broadcast_benchmark_writes_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.broadcast", "--tiny", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads((tmp_path / "broadcast.json").read_text())
    assert [row["subscribers"] for row in document["publish"]] == [1, 100, 1000]
    assert {(run["impl"], run["subscribers"]) for run in document["fanout"]} == {
        (impl, n) for impl in ("queues", "broadcast") for n in (10, 100)
    }
    assert all(
        run["delivered"] == run["subscribers"] * (50 if run["subscribers"] == 10 else 5)
        for run in document["fanout"]
    )
    assert document["memory"]["bytes_per_subscriber"] > 0
    assert "## Fan-out throughput over gRPC" in (tmp_path / "broadcast.md").read_text()


async def test_microbench_measures_every_building_block() -> None:
    lines = await measure_all(count=200, rounds=1)
    assert [what for what, _, _ in lines][:3] == [
        "awaited write, plain",
        "SendQueue.send, queue full (bulk stream)",
        "SendQueue.send, idle writer woken per message (ping-pong)",
    ]
    assert all(value == value for _, value, _ in lines)  # no NaN: every line was measured


@pytest.mark.slow
def test_tiny_scale_out_benchmark_compares_redis_with_in_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_out", "--tiny", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "scale_out.json").read_text())["results"]
    assert [(r["backend"], r["replicas"]) for r in results] == [
        ("in-memory", 1),
        ("Redis Streams", 3),
    ]
    assert all(r["entries_per_second"] > 0 and r["latency_p99_ms"] > 0 for r in results)
    assert "Added latency through Redis" in (tmp_path / "scale_out.md").read_text()
