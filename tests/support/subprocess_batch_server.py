"""The coalescing LogBatchService in its own process.

Run as ``python -m tests.support.subprocess_batch_server``.

Prints ``PORT <n>`` once serving, then serves until killed (tests SIGKILL it).
"""

from __future__ import annotations

import argparse
import asyncio

import grpcstream
from tests.support.batch_servicer import BatchedLogService


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = grpcstream.StreamServer(f"127.0.0.1:{args.port}")
    server.add(BatchedLogService())
    await server.start()
    print(f"PORT {server.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
