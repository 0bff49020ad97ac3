"""The coalescing benchmark (issue 16): entries/s of one stream, batched and not.

``python -m benchmarks.coalescing [--size default|quick|tiny]`` starts a raw grpc.aio and
a grpcstream ``LogBench`` server (``benchmarks.coalescing_impl``) and a client process
that runs, per repeat and in alternation, every variant of every scenario:

- ``raw per-message``: plain grpc.aio, one ``LogEntry`` per message;
- ``raw batching loop``: plain grpc.aio with the hand-written adaptive loop
  (``AdaptiveBatcher``: one writer drains whatever queued up while its last write was in
  flight, as one ``LogBatch``);
- ``grpcstream coalescing``: ``batching=`` on both sides, entry-by-entry API;
- ``grpcstream per-message`` (latency scenario only): grpcstream without batching.

Every sender builds each entry inside the timed loop (``build_entry``, ~150 bytes).
``make bench`` runs it after the main scenarios (``benchmarks.run`` adds its table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, Literal

import grpc.aio
import psutil

import grpcstream
from grpcstream_demo import bench_pb2, bench_pb2_grpc
from grpcstream_demo.logs_pb2 import LogEntry, LogRequest

from .coalescing_impl import LOG_BATCHES, AdaptiveBatcher, build_entry, sent_at_ns
from .common import cpu_seconds, monotonic, run_on_loop
from .report import DASH, TIMES

__all__ = ["CoalescingRun", "Variant", "render_coalescing", "run_coalescing"]

Variant = Literal[
    "raw per-message", "raw batching loop", "grpcstream coalescing", "grpcstream per-message"
]
Size = Literal["default", "quick", "tiny"]
VARIANTS: Final[tuple[Variant, ...]] = (
    "raw per-message",
    "raw batching loop",
    "grpcstream coalescing",
)
LATENCY_VARIANTS: Final[tuple[Variant, ...]] = (
    "raw per-message",
    "grpcstream per-message",
    "grpcstream coalescing",
)
CHECK_EVERY: Final = 256
SAMPLE_EVERY: Final = 8
"""At saturation one entry in 8 is timed (reading the clock is not free)."""

SCENARIOS: Final = {
    # Light load first in every repeat: a saturated stream just cancelled by the client
    # can keep a server busy for a moment and would blur the latency figures.
    "light_load": "server streaming at 200 entries/s (latency)",
    "server_stream": "server streaming, one stream",
    "client_stream": "client streaming, one stream",
    "bidi_pipelined": "bidi pipelined (echo), one stream",
    "producers_16": "server streaming, 16 producer tasks on one stream",
}

_SIZES: Final[dict[Size, dict[str, float]]] = {
    # count: entries per run (a run also stops at time_cap); light: entries at 200/s
    "default": {"count": 2_000_000, "time_cap": 2.0, "repeats": 5, "light": 400},
    "quick": {"count": 300_000, "time_cap": 0.7, "repeats": 1, "light": 100},
    "tiny": {"count": 2_000, "time_cap": 0.5, "repeats": 1, "light": 20},
}


@dataclass(slots=True)
class CoalescingRun:
    """One run of one variant of one scenario (client process side)."""

    scenario: str
    variant: str
    repeat: int
    entries: int
    elapsed_s: float
    client_cpu_s: float
    server_cpu_s: float
    batches_sent: int | None = None
    batches_back: int | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    latencies: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, object]:
        """Every field except the raw latency samples."""
        data = asdict(self)
        del data["latencies"]
        return data


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index] / 1000


class _Client:
    """The client process: one raw channel and one grpcstream channel, the scenarios."""

    def __init__(self, raw_port: int, grpcstream_port: int) -> None:
        self.raw_channel = grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}")
        self.raw = bench_pb2_grpc.LogBenchStub(self.raw_channel)
        self.gs_channel = grpcstream.connect(f"127.0.0.1:{grpcstream_port}")
        self.gs = grpcstream.StreamClient(self.gs_channel, bench_pb2_grpc.LogBenchStub)

    async def aclose(self) -> None:
        await self.gs.aclose()
        await self.gs_channel.close()
        await self.raw_channel.close()

    async def last_stream(self, variant: Variant) -> bench_pb2.StreamStatistics:
        if variant.startswith("raw"):
            return await self.raw.LastStream(bench_pb2.StatisticsRequest())
        return await self.gs.unary(self.gs.stub.LastStream, bench_pb2.StatisticsRequest())

    # -- receiving a server stream --------------------------------------------------------

    async def server_stream(
        self, variant: Variant, request: LogRequest, deadline: float, every: int
    ) -> tuple[int, list[int]]:
        latencies: list[int] = []
        received = 0
        clock = time.time_ns
        if variant == "raw per-message":
            call = self.raw.StreamEntries(request)
            async for entry in call:
                received += 1
                if received % every == 0:
                    latencies.append(clock() - sent_at_ns(entry))
                    if received % CHECK_EVERY == 0 and monotonic() > deadline:
                        call.cancel()
                        break
            return received, latencies
        if variant == "raw batching loop":
            batches = self.raw.StreamBatches(request)
            async for batch in batches:
                for entry in batch.entries:
                    received += 1
                    if received % every == 0:
                        latencies.append(clock() - sent_at_ns(entry))
                if monotonic() > deadline:
                    batches.cancel()
                    break
            return received, latencies
        gs = self.gs
        stream = (
            gs.server_stream(gs.stub.StreamBatches, request, batching=LOG_BATCHES)
            if variant == "grpcstream coalescing"
            else gs.server_stream(gs.stub.StreamEntries, request)
        )
        async with stream as entries:
            async for entry in entries:
                received += 1
                if received % every == 0:
                    latencies.append(clock() - sent_at_ns(entry))
                    if received % CHECK_EVERY == 0 and monotonic() > deadline:
                        break
        return received, latencies

    # -- sending a client stream ----------------------------------------------------------

    async def client_stream(self, variant: Variant, count: int, deadline: float) -> tuple[int, int]:
        """Send up to ``count`` entries; return (entries the server counted, batches sent)."""
        if variant == "raw per-message":
            call = self.raw.UploadEntries()
            for seq in range(1, count + 1):
                await call.write(build_entry(seq))
                if seq % CHECK_EVERY == 0 and monotonic() > deadline:
                    break
            await call.done_writing()
            summary = await call
            return summary.received, summary.received
        if variant == "raw batching loop":
            upload = self.raw.UploadBatches()
            batcher = AdaptiveBatcher(upload.write)
            add = batcher.add
            for seq in range(1, count + 1):
                await add(build_entry(seq))
                if seq % CHECK_EVERY == 0 and monotonic() > deadline:
                    break
            await batcher.close()
            await upload.done_writing()
            summary = await upload
            return summary.received, batcher.batches
        gs = self.gs
        async with gs.client_stream(gs.stub.UploadBatches, batching=LOG_BATCHES) as stream:
            send = stream.send
            for seq in range(1, count + 1):
                await send(build_entry(seq))
                if seq % CHECK_EVERY == 0 and monotonic() > deadline:
                    break
            summary = await stream.close_and_receive()
            return summary.received, stream.statistics().batches

    # -- bidi, pipelined ------------------------------------------------------------------

    async def bidi(
        self, variant: Variant, count: int, deadline: float
    ) -> tuple[int, int, list[int]]:
        """Echo up to ``count`` entries; return (echoed entries, batches sent, latencies)."""
        latencies: list[int] = []
        clock = time.time_ns
        received = 0
        stop = False

        async def feed(add: Callable[[LogEntry], Awaitable[None]]) -> None:
            for seq in range(1, count + 1):
                await add(build_entry(seq))
                if stop or (seq % CHECK_EVERY == 0 and monotonic() > deadline):
                    break

        def seen(entry: LogEntry) -> None:
            nonlocal received, stop
            received += 1
            if received % SAMPLE_EVERY == 0:
                latencies.append(clock() - sent_at_ns(entry))

        if variant == "raw per-message":
            call = self.raw.EchoEntries()

            async def write_all() -> None:
                await feed(call.write)
                await call.done_writing()

            writer = asyncio.create_task(write_all())
            async for entry in call:
                seen(entry)
            await writer
            return received, received, latencies
        if variant == "raw batching loop":
            echo = self.raw.EchoBatches()
            batcher = AdaptiveBatcher(echo.write)

            async def write_batches() -> None:
                await feed(batcher.add)
                await batcher.close()
                await echo.done_writing()

            writer = asyncio.create_task(write_batches())
            async for batch in echo:
                for entry in batch.entries:
                    seen(entry)
            await writer
            return received, batcher.batches, latencies
        gs = self.gs
        async with gs.bidi_stream(gs.stub.EchoBatches, batching=LOG_BATCHES) as stream:

            async def send_all() -> None:
                await feed(stream.send)
                await stream.close_send()

            stream.spawn(send_all())
            async for entry in stream:
                seen(entry)
            return received, stream.statistics().batches, latencies


async def _measure(
    client: _Client,
    scenario: str,
    variant: Variant,
    repeat: int,
    sizes: dict[str, float],
    server_pids: dict[str, int],
) -> CoalescingRun:
    server = psutil.Process(server_pids["raw" if variant.startswith("raw") else "grpcstream"])

    def server_cpu() -> float:
        times = server.cpu_times()
        return float(times.user + times.system)

    count = int(sizes["count"])
    server_start, client_start, start = server_cpu(), cpu_seconds(), monotonic()
    deadline = start + sizes["time_cap"]
    latencies: list[int] = []
    batches_sent: int | None = None
    if scenario in ("server_stream", "producers_16", "light_load"):
        if scenario == "light_load":
            request = LogRequest(limit=int(sizes["light"]), service="rate:200")
            deadline = start + 3600.0  # paced: it ends when the entries are sent
            every = 1
        elif scenario == "producers_16":
            request, every = LogRequest(limit=count, service="producers:16"), SAMPLE_EVERY
        else:
            request, every = LogRequest(limit=count), SAMPLE_EVERY
        entries, latencies = await client.server_stream(variant, request, deadline, every)
    elif scenario == "client_stream":
        entries, batches_sent = await client.client_stream(variant, count, deadline)
    else:
        entries, batches_sent, latencies = await client.bidi(variant, count, deadline)
    elapsed = monotonic() - start
    client_cpu, server_cpu_used = cpu_seconds() - client_start, server_cpu() - server_start
    run = CoalescingRun(scenario, variant, repeat, entries, elapsed, client_cpu, server_cpu_used)
    run.batches_sent = batches_sent
    if scenario != "client_stream":
        back = entries
        if variant != "raw per-message" and variant != "grpcstream per-message":
            # What the server wrote, in the same entries as counted here (a stream the
            # client cancelled at its deadline may have written a little more).
            last = await client.last_stream(variant)
            back = round(entries * last.batches / last.entries) if last.entries else 0
        if scenario == "bidi_pipelined":
            run.batches_back = back
        else:
            run.batches_sent = back
    if latencies:
        run.p50_us = _percentile(latencies, 0.50)
        run.p99_us = _percentile(latencies, 0.99)
        run.latencies = latencies
    return run


SWEEP_RATES: Final = (200, 2_000, 20_000, 100_000, 0)
"""Offered loads (entries/s) of the batch-size sweep; 0 is as fast as the server goes."""


async def _sweep(client: _Client, seconds: float) -> list[dict[str, float]]:
    """Mean batch size and latency of grpcstream coalescing against the offered load."""
    rows = []
    for rate in SWEEP_RATES:
        limit = int(rate * seconds) if rate else 10_000_000
        service = f"rate:{rate}" if rate else ""
        start = monotonic()
        received, latencies = await client.server_stream(
            "grpcstream coalescing", LogRequest(limit=limit, service=service), start + seconds, 1
        )
        elapsed = monotonic() - start
        last = await client.last_stream("grpcstream coalescing")
        rows.append(
            {
                "offered": float(rate),
                "entries_per_s": received / elapsed,
                "mean_batch": last.entries / last.batches if last.batches else 0.0,
                "p50_us": _percentile(latencies, 0.50),
                "p99_us": _percentile(latencies, 0.99),
            }
        )
    return rows


async def _client_main(raw_port: int, gs_port: int, size: Size, pids: dict[str, int]) -> None:
    sizes = _SIZES[size]
    client = _Client(raw_port, gs_port)
    runs: list[CoalescingRun] = []
    try:
        warm = dict(sizes, count=2000.0, time_cap=1.0, light=5.0)
        for scenario in SCENARIOS:
            for variant in _variants(scenario):
                await _measure(client, scenario, variant, -1, warm, pids)
        for repeat in range(int(sizes["repeats"])):
            for scenario in SCENARIOS:
                for variant in _variants(scenario):  # alternating: same machine state
                    run = await _measure(client, scenario, variant, repeat, sizes, pids)
                    runs.append(run)
                    print(f"{scenario}/{variant}/#{repeat}: {_brief(run)}", file=sys.stderr)
        sweep = await _sweep(client, 1.0 if size == "default" else 0.2)
    finally:
        await client.aclose()
    print(json.dumps({"runs": [run.to_json() for run in runs], "sweep": sweep}), flush=True)


def _variants(scenario: str) -> tuple[Variant, ...]:
    if scenario == "producers_16":
        return ("grpcstream coalescing",)
    if scenario == "light_load":
        return LATENCY_VARIANTS
    return VARIANTS


def _brief(run: CoalescingRun) -> str:
    rate = run.entries / run.elapsed_s if run.elapsed_s else 0.0
    return f"{run.entries} entries, {rate:,.0f}/s, p50 {run.p50_us} us, p99 {run.p99_us} us"


# -- runner side ---------------------------------------------------------------------------


def run_coalescing(size: Size = "default", timeout: float = 600.0) -> dict[str, object]:
    """Start both servers and the client process; return runs and summary rows."""
    from .processes import BenchProcessError, _Child

    servers: dict[str, _Child] = {}
    try:
        for impl in ("raw", "grpcstream"):
            child = _Child(["-m", "benchmarks.coalescing_impl", "--impl", impl], f"{impl} server")
            servers[impl] = child
            word, _, port = child.read_line(30.0).partition(" ")
            if word != "PORT":
                raise BenchProcessError(f"coalescing {impl} server did not print its port")
            child.port = int(port)  # type: ignore[attr-defined]
        args = [
            "-m",
            "benchmarks.coalescing",
            "--client",
            f"--raw-port={servers['raw'].port}",  # type: ignore[attr-defined]
            f"--grpcstream-port={servers['grpcstream'].port}",  # type: ignore[attr-defined]
            f"--raw-pid={servers['raw'].pid}",
            f"--grpcstream-pid={servers['grpcstream'].pid}",
            f"--size={size}",
        ]
        load_start = list(os.getloadavg())
        client = _Child(args, "coalescing client")
        try:
            answer = json.loads(client.read_line(timeout))
        finally:
            client.close()
    finally:
        for child in servers.values():
            child.close()
    return {
        "size": size,
        "load_average_start": load_start,
        "load_average_end": list(os.getloadavg()),
        "runs": answer["runs"],
        "sweep": answer["sweep"],
        "summary": summarize_coalescing(answer["runs"]),
    }


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarize_coalescing(raw_runs: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per scenario and variant: medians of rate, batch size, CPU and latency."""
    runs = [CoalescingRun(**run) for run in raw_runs]  # type: ignore[arg-type]
    rows: list[dict[str, object]] = []
    for scenario in SCENARIOS:
        for variant in _variants(scenario):
            mine = [
                r for r in runs if r.scenario == scenario and r.variant == variant and r.entries
            ]
            if not mine:
                continue
            rates = [r.entries / r.elapsed_s for r in mine]
            row: dict[str, object] = {
                "scenario": scenario,
                "variant": variant,
                "entries_per_s": _median(rates),
                "rates": rates,
                "p50_us": _median([r.p50_us for r in mine if r.p50_us is not None]),
                "p99_us": _median([r.p99_us for r in mine if r.p99_us is not None]),
                "client_cpu_us": _median([r.client_cpu_s / r.entries * 1e6 for r in mine]),
                "server_cpu_us": _median([r.server_cpu_s / r.entries * 1e6 for r in mine]),
                "mean_batch_sent": _median(
                    [r.entries / r.batches_sent for r in mine if r.batches_sent]
                ),
                "mean_batch_back": _median(
                    [r.entries / r.batches_back for r in mine if r.batches_back]
                ),
            }
            rows.append(row)
    _apply_targets(rows)
    return rows


def _find(rows: list[dict[str, object]], scenario: str, variant: str) -> dict[str, object] | None:
    return next((r for r in rows if r["scenario"] == scenario and r["variant"] == variant), None)


def _ratio(a: object, b: object) -> float | None:
    return float(a) / float(b) if isinstance(a, float) and isinstance(b, float) and b else None


def _apply_targets(rows: list[dict[str, object]]) -> None:
    for scenario in ("server_stream", "client_stream", "bidi_pipelined"):
        ours = _find(rows, scenario, "grpcstream coalescing")
        loop = _find(rows, scenario, "raw batching loop")
        per = _find(rows, scenario, "raw per-message")
        if ours is None or loop is None or per is None:
            continue
        ours["vs_batching_loop"] = _ratio(ours["entries_per_s"], loop["entries_per_s"])
        ours["vs_per_message"] = _ratio(ours["entries_per_s"], per["entries_per_s"])
        loop["vs_per_message"] = _ratio(loop["entries_per_s"], per["entries_per_s"])
        ours["targets"] = {
            f"≥ 0.90{TIMES} batching loop": _holds(ours["vs_batching_loop"], 0.90, higher=True),
            f"≥ 15{TIMES} per-message": _holds(ours["vs_per_message"], 15.0, higher=True),
            "p99 < 10 ms": _holds(ours["p99_us"], 10_000.0, higher=False),
        }
        if scenario != "server_stream":
            # The saturation latency target is the one-stream server-streaming case; the
            # others queue in both directions (bidi) or measure no latency (client).
            del ours["targets"]["p99 < 10 ms"]  # type: ignore[attr-defined]
    single = _find(rows, "server_stream", "grpcstream coalescing")
    many = _find(rows, "producers_16", "grpcstream coalescing")
    if single is not None and many is not None:
        many["vs_single_producer"] = _ratio(many["entries_per_s"], single["entries_per_s"])
        many["targets"] = {
            f"≥ 0.90{TIMES} one producer": _holds(many["vs_single_producer"], 0.9, higher=True)
        }
    light = _find(rows, "light_load", "grpcstream coalescing")
    plain = _find(rows, "light_load", "raw per-message")
    if light is not None and plain is not None:
        light["vs_per_message_p50"] = _ratio(light["p50_us"], plain["p50_us"])
        light["targets"] = {
            f"p50 ≤ 1.10{TIMES} per-message": _holds(
                light["vs_per_message_p50"], 1.10, higher=False
            )
        }


def _holds(value: object, bound: float, *, higher: bool) -> bool | None:
    if not isinstance(value, float):
        return None
    return value >= bound if higher else value < bound if bound == 10_000.0 else value <= bound


def _fmt(value: object, digits: int = 0) -> str:
    if not isinstance(value, float):
        return DASH
    return f"{value:,.{digits}f}"


def render_coalescing(document: dict[str, object]) -> str:
    """The markdown section for latest.md and docs/performance.md."""
    rows = document["summary"]
    assert isinstance(rows, list)
    load_start, load_end = document["load_average_start"], document["load_average_end"]
    lines = [
        "## Coalescing (issue 16): one stream of ~150-byte log entries, asyncio",
        "",
        f"Load average (1, 5, 15 min) at start: {_load(load_start)}; at end: {_load(load_end)}. "
        "Each sender builds every entry inside the timed loop. Cells are medians over the "
        f"repeats (entries/s with min{DASH}max); ratios are of the medians; latency is "
        "send-to-receive (p50/p99, one entry in 8 sampled at saturation, "
        "every entry at 200/s); mean batch is entries per write (sent / echoed back); CPU is µs "
        "per entry, all threads of the process.",
        "",
        "| Scenario | Variant | entries/s | vs batching loop | vs per-message | p50 µs | p99 µs "
        "| mean batch | client CPU µs | server CPU µs | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        assert isinstance(row, dict)
        batch = _fmt(row.get("mean_batch_sent"), 1)
        if row.get("mean_batch_back") is not None:
            batch += f" / {_fmt(row.get('mean_batch_back'), 1)}"
        vs_single = row.get("vs_single_producer")
        vs_loop = _fmt(row.get("vs_batching_loop"), 2)
        if isinstance(vs_single, float):
            vs_loop = f"{vs_single:.2f}{TIMES} of one producer"
        vs_plain = row.get("vs_per_message")
        if row.get("vs_per_message_p50") is not None:
            vs_plain = row.get("vs_per_message_p50")
        targets = row.get("targets")
        target_text = ""
        if isinstance(targets, dict):
            target_text = "; ".join(
                f"{name}: {'yes' if ok else '**no**' if ok is False else '?'}"
                for name, ok in targets.items()
            )
        lines.append(
            f"| {SCENARIOS[str(row['scenario'])]} | {row['variant']} "
            f"| {_rate_cell(row)} | {vs_loop} | {_fmt(vs_plain, 2)} "
            f"| {_fmt(row['p50_us'])} | {_fmt(row['p99_us'])} | {batch} "
            f"| {_fmt(row['client_cpu_us'], 1)} | {_fmt(row['server_cpu_us'], 1)} | {target_text} |"
        )
    sweep = document.get("sweep")
    if isinstance(sweep, list) and sweep:
        lines += [
            "",
            "Batch size against offered load (grpcstream coalescing, server streaming, "
            "default `Batching`, no linger):",
            "",
            "| offered entries/s | delivered entries/s | mean batch | p50 µs | p99 µs |",
            "|---|---|---|---|---|",
        ]
        for point in sweep:
            offered = "as fast as it goes" if not point["offered"] else _fmt(point["offered"])
            lines.append(
                f"| {offered} | {_fmt(point['entries_per_s'])} | {_fmt(point['mean_batch'], 1)} "
                f"| {_fmt(point['p50_us'])} | {_fmt(point['p99_us'])} |"
            )
    return "\n".join(lines) + "\n"


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_coalescing(document: dict[str, object], output_dir: Path = RESULTS_DIR) -> None:
    """Write ``coalescing.md`` (the table the docs include) and ``coalescing.json``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"Run finished {started} ({document['size']} size).\n\n"
    (output_dir / "coalescing.md").write_text(header + render_coalescing(document))
    (output_dir / "coalescing.json").write_text(json.dumps(document, indent=2) + "\n")


def _rate_cell(row: dict[str, object]) -> str:
    rates = row.get("rates")
    text = _fmt(row["entries_per_s"])
    if isinstance(rates, list) and len(rates) > 1:
        text += f" ({min(rates):,.0f}{DASH}{max(rates):,.0f})"
    return text


def _load(value: object) -> str:
    if not isinstance(value, list):
        return "?"
    return ", ".join(f"{v:.2f}" for v in value)


def main(argv: list[str] | None = None) -> None:
    """Run the coalescing benchmark alone (or, with ``--client``, be its client process)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=tuple(_SIZES), default="default")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-port", type=int)
    parser.add_argument("--grpcstream-port", type=int)
    parser.add_argument("--raw-pid", type=int)
    parser.add_argument("--grpcstream-pid", type=int)
    args = parser.parse_args(argv)
    size: Size = args.size
    if args.client:
        pids = {"raw": args.raw_pid, "grpcstream": args.grpcstream_pid}
        run_on_loop(
            "asyncio", lambda: _client_main(args.raw_port, args.grpcstream_port, size, pids)
        )
        return
    parser_output = args.output_dir
    document = run_coalescing(size)
    write_coalescing(document, parser_output)
    print(render_coalescing(document))


if __name__ == "__main__":
    main()
