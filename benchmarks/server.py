"""Benchmark server process: ``python -m benchmarks.server --impl raw|grpcstream``.

Binds 127.0.0.1 on an ephemeral port, prints ``PORT <n>`` on stdout, and serves until
its stdin is closed (the runner holds the other end) or it receives SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable

from .common import IMPLS, LOOPS, Impl, LoopKind, run_on_loop, stdin_reader

__all__ = ["main"]


async def _wait_for_stop() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The runner closes our stdin when it is done (or dies): treat EOF as "stop".
    reader = await stdin_reader()
    stdin_eof = asyncio.ensure_future(reader.read())
    stop_wait = asyncio.ensure_future(stop.wait())
    await asyncio.wait({stdin_eof, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    stdin_eof.cancel()


async def _serve(impl: Impl) -> None:
    stop_server: Callable[[], Awaitable[None]]
    if impl == "raw":
        from .raw_impl import start_raw_server

        raw_server, port = await start_raw_server()

        async def stop_raw() -> None:
            await raw_server.stop(0)

        stop_server = stop_raw
    else:
        from .grpcstream_impl import start_grpcstream_server

        port, stop_server = await start_grpcstream_server()
    print(f"PORT {port}", flush=True)
    try:
        await _wait_for_stop()
    finally:
        await stop_server()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    args = parser.parse_args(argv)
    impl: Impl = args.impl
    loop: LoopKind = args.loop
    run_on_loop(loop, lambda: _serve(impl))


if __name__ == "__main__":
    main()
