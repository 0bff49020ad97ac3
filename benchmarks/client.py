"""Benchmark client process: ``python -m benchmarks.client --impl ... --port N --server-pid P``.

Connects once, prints ``READY``, then reads one JSON command per line on stdin and
answers each with one JSON line on stdout. Commands:

- ``{"scenario": KEY, "count": N, "time_cap": S, "repeat": R}``: run and measure once.
- ``{"warmup": true, "count": N}``: run every scenario once, small, unmeasured.

It exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from .common import IMPLS, LOOPS, Impl, LoopKind, monotonic, run_on_loop, stdin_reader
from .scenarios import SCENARIOS, ScenarioClient, measure

__all__ = ["main"]

_BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}


def _make_client(impl: Impl, target: str) -> ScenarioClient:
    if impl == "raw":
        from .raw_impl import RawClient

        return RawClient(target)
    from .grpcstream_impl import GrpcstreamClient

    return GrpcstreamClient(target)


async def _warm_up(client: ScenarioClient, impl: Impl, count: int) -> None:
    deadline = monotonic() + 5.0
    await client.server_stream(count, deadline)
    await client.client_stream(count, deadline)
    await client.bidi_pipelined(count, deadline)
    await client.ping_pong(max(1, count // 10), deadline)
    await client.unary(max(1, count // 10), 8, deadline)
    if impl == "grpcstream":
        await client.producers(count, 16, deadline)


def _reply(payload: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def _serve_commands(impl: Impl, loop: LoopKind, target: str, server_pid: int) -> None:
    client = _make_client(impl, target)
    await client.connect()
    _reply({"ready": True})
    reader = await stdin_reader()
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            command = json.loads(line)
            try:
                if command.get("warmup"):
                    await _warm_up(client, impl, int(command["count"]))
                    _reply({"ok": True})
                    continue
                result = await measure(
                    client,
                    _BY_KEY[command["scenario"]],
                    count=int(command["count"]),
                    time_cap=float(command["time_cap"]),
                    server_pid=server_pid,
                    impl=impl,
                    loop=loop,
                    repeat=int(command["repeat"]),
                )
                _reply({"ok": True, "result": result.to_json()})
            except Exception as exc:  # report and keep serving: one failed run is data
                _reply({"ok": False, "error": repr(exc), "traceback": traceback.format_exc()})
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and answer commands until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    args = parser.parse_args(argv)
    impl: Impl = args.impl
    loop: LoopKind = args.loop
    target = f"127.0.0.1:{args.port}"
    run_on_loop(loop, lambda: _serve_commands(impl, loop, target, args.server_pid))


if __name__ == "__main__":
    main()
