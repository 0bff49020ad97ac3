"""Run the benchmark: ``python -m benchmarks.run [--quick]`` (``make bench``).

For each event loop (asyncio, and uvloop if installed) the runner starts one server and
one client process per implementation, warms both up, then runs every scenario with raw
grpc.aio and grpcstream alternating (raw, grpcstream, raw, grpcstream, ...). The idle
stream scenario gets fresh processes for every run, so its memory figures are not
blurred by earlier scenarios. The whole run is bounded by ``--budget`` seconds: a run
that would not fit is skipped and reported as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from .coalescing import render_coalescing, run_coalescing, write_coalescing
from .common import IMPLS, Impl, LoopKind, uvloop_available
from .processes import BenchClient, BenchProcessError, BenchServer
from .report import collect_machine_info, render_markdown, summarize
from .scenarios import SCENARIOS, RunResult, Scenario, Size, Sizes, sizes_for

__all__ = ["grpcstream_available", "main", "run_benchmarks"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_DEFAULT_BUDGET: dict[Size, float] = {"default": 280.0, "quick": 55.0, "tiny": 40.0}
_COMMAND_SLACK = 60.0  # seconds beyond a run's time cap before a client is declared hung
_WARMUP_COUNT: dict[Size, int] = {"default": 2000, "quick": 500, "tiny": 50}
COALESCING = "coalescing"
"""``--scenario coalescing`` selects the coalescing scenarios (run by default)."""


def grpcstream_available() -> bool:
    """True once grpcstream's client and server API has landed (checked by name)."""
    import grpcstream

    needed = ("StreamClient", "StreamServer", "StreamServicer", "connect", "server_streaming")
    return all(hasattr(grpcstream, name) for name in needed)


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def allows(self, cost: float) -> bool:
        return time.monotonic() - self.start + cost <= self.seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_once(client: BenchClient, scenario: Scenario, sizes: Sizes, repeat: int) -> RunResult:
    command: dict[str, object] = {
        "scenario": scenario.key,
        "count": sizes.counts[scenario.key],
        "time_cap": sizes.time_cap,
        "repeat": repeat,
    }
    answer = client.request(command, timeout=sizes.time_cap + _COMMAND_SLACK)
    raw = answer["result"]
    assert isinstance(raw, dict)
    return RunResult(**raw)


def _run_loop(
    loop: LoopKind,
    impls: tuple[Impl, ...],
    scenarios: list[Scenario],
    sizes: Sizes,
    warmup_count: int,
    budget: _Budget,
    results: list[RunResult],
    skipped: list[str],
) -> None:
    streaming = [s for s in scenarios if s.kind != "idle_streams"]
    if streaming:
        with contextlib.ExitStack() as stack:
            clients: dict[Impl, BenchClient] = {}
            for impl in impls:
                server = stack.enter_context(BenchServer(impl, loop))
                clients[impl] = stack.enter_context(BenchClient(impl, loop, server))
            for impl in impls:
                clients[impl].request({"warmup": True, "count": warmup_count}, timeout=120.0)
            for scenario in streaming:
                for repeat in range(sizes.repeats):
                    for impl in impls:  # A B A B ...: both see the same machine state
                        if impl not in scenario.impls:
                            continue
                        label = f"{loop}/{scenario.key}/{impl}/#{repeat}"
                        if not budget.allows(sizes.time_cap + 1.0):
                            skipped.append(label)
                            continue
                        result = _run_once(clients[impl], scenario, sizes, repeat)
                        results.append(result)
                        _log(f"[{budget.elapsed():6.1f}s] {label}: {_brief(result)}")
    for scenario in (s for s in scenarios if s.kind == "idle_streams"):
        for repeat in range(sizes.repeats):
            for impl in impls:
                label = f"{loop}/{scenario.key}/{impl}/#{repeat}"
                # Fresh processes: startup (~1-2 s each) plus opening the streams.
                if not budget.allows(sizes.time_cap + 6.0):
                    skipped.append(label)
                    continue
                with BenchServer(impl, loop) as server, BenchClient(impl, loop, server) as client:
                    result = _run_once(client, scenario, sizes, repeat)
                results.append(result)
                _log(f"[{budget.elapsed():6.1f}s] {label}: {_brief(result)}")


def _brief(result: RunResult) -> str:
    if result.server_rss_per_stream is not None:
        return f"{result.server_rss_per_stream:,.0f} B/stream server RSS"
    if result.p50_us is not None:
        return f"p50 {result.p50_us:.0f} us, p99 {result.p99_us:.0f} us"
    rate = result.messages / result.elapsed_s if result.elapsed_s else 0.0
    return f"{result.messages} msgs, {rate:,.0f} msg/s"


def run_benchmarks(
    *,
    size: Size = "default",
    loops: tuple[LoopKind, ...] = (),
    scenario_keys: list[str] | None = None,
    repeats: int | None = None,
    time_cap: float | None = None,
    budget_s: float | None = None,
    output_dir: Path = RESULTS_DIR,
) -> dict[str, object]:
    """Run the benchmark and write ``latest.md`` and ``latest.json`` into ``output_dir``.

    Returns the JSON document that was written.
    """
    sizes = sizes_for(size)
    sizes = Sizes(
        counts=sizes.counts,
        time_cap=sizes.time_cap if time_cap is None else time_cap,
        repeats=sizes.repeats if repeats is None else repeats,
    )
    if not loops:
        # Only the full run pays for a second event loop; --quick must stay under a minute.
        both = size == "default" and uvloop_available()
        loops = ("asyncio", "uvloop") if both else ("asyncio",)
    impls: tuple[Impl, ...] = IMPLS if grpcstream_available() else ("raw",)
    scenarios = [s for s in SCENARIOS if scenario_keys is None or s.key in scenario_keys]
    coalescing = "grpcstream" in impls and (scenario_keys is None or COALESCING in scenario_keys)
    budget = _Budget(budget_s if budget_s is not None else _DEFAULT_BUDGET[size])
    machine = collect_machine_info()
    results: list[RunResult] = []
    skipped: list[str] = []
    if "grpcstream" not in impls:
        _log("grpcstream's client/server API is not there yet: measuring raw grpc.aio only")
    for loop in loops:
        _run_loop(loop, impls, scenarios, sizes, _WARMUP_COUNT[size], budget, results, skipped)
    coalescing_document = None
    if coalescing:
        # Its own servers and client (benchmarks/coalescing.py), after the main scenarios.
        _log(f"[{budget.elapsed():6.1f}s] coalescing scenarios (issue 16)")
        coalescing_document = run_coalescing(size)
    machine["load_average_end"] = list(os.getloadavg())
    summary = summarize(results, scenarios, loops)
    document: dict[str, object] = {
        "machine": machine,
        "size": size,
        "counts": sizes.counts,
        "time_cap_s": sizes.time_cap,
        "repeats": sizes.repeats,
        "loops": list(loops),
        "impls": list(impls),
        "wall_time_s": round(budget.elapsed(), 1),
        "skipped": skipped,
        "summary": summary,
        "runs": [result.to_json() for result in results],
        "coalescing": coalescing_document,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    _write(output_dir / "latest.json", json.dumps(document, indent=2) + "\n")
    markdown = render_markdown(document)
    if coalescing_document is not None:
        markdown += "\n" + render_coalescing(coalescing_document)
        write_coalescing(coalescing_document, output_dir)
    _write(output_dir / "latest.md", markdown)
    return document


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m benchmarks.run [--quick] [--loop L] [--scenario KEY]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small counts, under a minute")
    group.add_argument("--tiny", action="store_true", help="smoke test: a few hundred messages")
    parser.add_argument("--loop", action="append", choices=("asyncio", "uvloop"))
    parser.add_argument(
        "--scenario", action="append", choices=[*(s.key for s in SCENARIOS), COALESCING]
    )
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--time-cap", type=float, help="seconds per run (default: 3)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    size: Size = "quick" if args.quick else "tiny" if args.tiny else "default"
    loops: tuple[LoopKind, ...] = tuple(args.loop or ())
    try:
        run_benchmarks(
            size=size,
            loops=loops,
            scenario_keys=args.scenario,
            repeats=args.repeats,
            time_cap=args.time_cap,
            budget_s=args.budget,
            output_dir=args.output_dir,
        )
    except BenchProcessError as exc:
        _log(f"benchmark failed: {exc}")
        raise SystemExit(1) from exc
    print((args.output_dir / "latest.md").read_text())
    _log(f"wrote {args.output_dir / 'latest.md'} and latest.json")


if __name__ == "__main__":
    main()
