"""Summaries (medians, min-max, ratios, targets) and the markdown table."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from .scenarios import RunResult, Scenario

__all__ = ["collect_machine_info", "render_markdown", "summarize"]

_ROOT = Path(__file__).resolve().parent.parent

Better = Literal["higher", "lower"]

DASH = "\u2013"  # en dash, for ranges and empty cells
TIMES = "\u00d7"  # multiplication sign


@dataclass(frozen=True, slots=True)
class _Metric:
    name: str
    unit: str
    better: Better
    value: Callable[[RunResult], float | None]
    target: float | None = None  # bound on grpcstream / raw (or vs scenario 1, see below)


def _rate(run: RunResult) -> float | None:
    return run.messages / run.elapsed_s if run.elapsed_s > 0 and run.messages else None


def _per_call_us(run: RunResult) -> float | None:
    return run.elapsed_s / run.messages * 1e6 if run.messages else None


_THROUGHPUT = _Metric("throughput", "msg/s", "higher", _rate, 0.95)
_METRICS: dict[str, list[_Metric]] = {
    "server_stream": [_THROUGHPUT],
    "client_stream": [_THROUGHPUT],
    "bidi_pipelined": [_THROUGHPUT],
    "ping_pong": [
        _Metric("round trip p50", "µs", "lower", lambda r: r.p50_us, 1.10),
        _Metric("round trip p99", "µs", "lower", lambda r: r.p99_us),
    ],
    "unary_sequential": [_Metric("time per call", "µs", "lower", _per_call_us, 1.10)],
    "unary_32": [_Metric("time per call", "µs", "lower", _per_call_us, 1.10)],
    "producers_16": [_Metric("throughput", "msg/s", "higher", _rate)],
    "idle_streams": [
        _Metric("server RSS per stream", "bytes", "lower", lambda r: r.server_rss_per_stream, 1.25),
        _Metric("client RSS per stream", "bytes", "lower", lambda r: r.client_rss_per_stream),
    ],
}
PRODUCERS_TARGET = 0.90
"""Scenario 6 (grpcstream, 16 producers) must reach this fraction of scenario 1 grpcstream."""


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "n": float(len(values)),
    }


def _cpu_per_message_us(runs: list[RunResult], side: Literal["client", "server"]) -> float | None:
    values = [
        (run.client_cpu_s if side == "client" else run.server_cpu_s) / run.messages * 1e6
        for run in runs
        if run.messages
    ]
    return float(statistics.median(values)) if values else None


def _holds(ratio: float | None, metric: _Metric) -> bool | None:
    if ratio is None or metric.target is None:
        return None
    return ratio >= metric.target if metric.better == "higher" else ratio <= metric.target


def summarize(
    results: list[RunResult], scenarios: list[Scenario], loops: Sequence[str]
) -> dict[str, list[dict[str, object]]]:
    """Per loop, one row per scenario metric: medians, min-max, ratio and target."""
    summary: dict[str, list[dict[str, object]]] = {}
    for loop in loops:
        rows: list[dict[str, object]] = []
        for scenario in scenarios:
            runs_by_impl = {
                impl: [r for r in results if r.loop == loop and r.scenario == scenario.key]
                for impl in ("raw", "grpcstream")
            }
            for impl, runs in runs_by_impl.items():
                runs_by_impl[impl] = [r for r in runs if r.impl == impl]
            for metric in _METRICS[scenario.key]:
                row = _row(scenario, metric, runs_by_impl)
                rows.append(row)
        _apply_producers_target(rows)
        summary[loop] = rows
    return summary


def _row(
    scenario: Scenario, metric: _Metric, runs_by_impl: dict[str, list[RunResult]]
) -> dict[str, object]:
    stats: dict[str, dict[str, float] | None] = {}
    cpu: dict[str, dict[str, float | None]] = {}
    for impl, runs in runs_by_impl.items():
        values = [v for v in (metric.value(run) for run in runs) if v is not None]
        stats[impl] = _stats(values)
        cpu[impl] = {
            "client_us_per_msg": _cpu_per_message_us(runs, "client"),
            "server_us_per_msg": _cpu_per_message_us(runs, "server"),
        }
    raw, ours = stats["raw"], stats["grpcstream"]
    ratio = ours["median"] / raw["median"] if raw and ours and raw["median"] else None
    target = None
    if metric.target is not None:
        target = f"{'≥' if metric.better == 'higher' else '≤'} {metric.target:.2f}{TIMES} raw"
    return {
        "scenario": scenario.key,
        "number": scenario.number,
        "title": scenario.title,
        "metric": metric.name,
        "unit": metric.unit,
        "better": metric.better,
        "raw": raw,
        "grpcstream": ours,
        "ratio": ratio,
        "target": target,
        "holds": _holds(ratio, metric),
        "cpu": cpu,
    }


def _apply_producers_target(rows: list[dict[str, object]]) -> None:
    baseline = next((r for r in rows if r["scenario"] == "server_stream"), None)
    for row in rows:
        if row["scenario"] != "producers_16":
            continue
        row["target"] = f"≥ {PRODUCERS_TARGET:.2f}{TIMES} scenario 1 grpcstream"
        ours = row["grpcstream"]
        base = baseline["grpcstream"] if baseline else None
        if isinstance(ours, dict) and isinstance(base, dict) and base["median"]:
            fraction = ours["median"] / base["median"]
            row["vs_scenario_1"] = fraction
            row["holds"] = fraction >= PRODUCERS_TARGET


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def collect_machine_info() -> dict[str, object]:
    """Date, CPU, cores, OS, Python and library versions, and the load when starting."""
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "uvloop": _version("uvloop"),
        "grpcstream": _version("grpcstream"),
        "git_commit": _git_commit(),
        "load_average_start": list(os.getloadavg()),
    }


def _fmt(value: float, unit: str) -> str:
    if unit == "msg/s":
        return f"{value:,.0f}"
    if unit == "bytes":
        return f"{value / 1024:,.1f} KiB"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _cell(stats: object, unit: str) -> str:
    if not isinstance(stats, dict):
        return DASH
    text = _fmt(stats["median"], unit)
    if stats["n"] > 1:
        text += f" ({_fmt(stats['min'], unit)}{DASH}{_fmt(stats['max'], unit)})"
    return text


def _cpu_cell(cpu: object, side: str) -> str:
    if not isinstance(cpu, dict):
        return DASH
    parts = []
    for impl in ("raw", "grpcstream"):
        value = cpu.get(impl, {}).get(f"{side}_us_per_msg")
        parts.append(DASH if value is None else f"{value:.1f}")
    return " / ".join(parts)


def _holds_cell(row: dict[str, object]) -> str:
    holds = row.get("holds")
    if holds is None:
        return ""
    return "yes" if holds else "**no**"


def _ratio_cell(row: dict[str, object]) -> str:
    if "vs_scenario_1" in row:
        return f"{row['vs_scenario_1']:.2f}{TIMES} of #1"
    ratio = row.get("ratio")
    return f"{ratio:.2f}" if isinstance(ratio, float) else DASH


def render_markdown(document: dict[str, object]) -> str:
    """The results page: machine, configuration, one table per event loop, targets."""
    machine = document["machine"]
    assert isinstance(machine, dict)
    counts = document["counts"]
    assert isinstance(counts, dict)
    lines = [
        "# grpcstream vs raw grpc.aio",
        "",
        f"Run on {machine['date_utc']} ({document['size']} size, "
        f"{document['wall_time_s']} s wall time, git {machine.get('git_commit')}).",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['os']}",
        f"- Python {machine['python']}, grpcio {machine['grpcio']}, "
        f"protobuf {machine['protobuf']}, uvloop {machine['uvloop'] or 'not installed'}",
        f"- Load average (1, 5, 15 min) at start: {_load(machine['load_average_start'])}; "
        f"at end: {_load(machine.get('load_average_end'))}",
        f"- Repeats per implementation: {document['repeats']}, alternating raw and grpcstream; "
        f"each run capped at {document['time_cap_s']} s",
        "- Messages per run: " + ", ".join(f"{key} {value:,}" for key, value in counts.items()),
        "",
        f"Cells are median (min{DASH}max) over the repeats. The ratio is grpcstream ÷ raw of the "
        "medians. CPU columns are the median CPU time per message (µs, all threads of the "
        "process), raw / grpcstream.",
    ]
    summary = document["summary"]
    assert isinstance(summary, dict)
    for loop, rows in summary.items():
        lines += [
            "",
            f"## Event loop: {loop}",
            "",
            "| # | Scenario | Metric | raw | grpcstream | ratio | target | holds "
            "| client CPU µs/msg | server CPU µs/msg |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            unit = row["unit"]
            lines.append(
                f"| {row['number']} | {row['title']} | {row['metric']} ({unit}) "
                f"| {_cell(row['raw'], unit)} | {_cell(row['grpcstream'], unit)} "
                f"| {_ratio_cell(row)} | {row['target'] or ''} | {_holds_cell(row)} "
                f"| {_cpu_cell(row['cpu'], 'client')} | {_cpu_cell(row['cpu'], 'server')} |"
            )
    skipped = document.get("skipped")
    if isinstance(skipped, list) and skipped:
        lines += ["", f"Skipped to stay within the time budget: {', '.join(skipped)}."]
    impls = document.get("impls")
    if isinstance(impls, list) and "grpcstream" not in impls:
        lines += ["", "grpcstream's client/server API was not available: raw grpc.aio only."]
    return "\n".join(lines) + "\n"


def _load(value: object) -> str:
    if not isinstance(value, list):
        return "?"
    return ", ".join(f"{v:.2f}" for v in value)
