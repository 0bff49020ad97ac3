"""A StreamServer in its own process, for tests that send it real signals.

``python -m tests.subprocess_stream_server [--port N] [--grace S]`` serves
``DummyStreamService`` with health and reflection, prints ``PORT <n>`` once serving and
``STOPPED`` after the drain, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio

import grpcstream
from tests.support.dummy_servicer import DummyStreamService


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--grace", type=float, default=2.0)
    args = parser.parse_args()
    server = grpcstream.StreamServer(
        f"127.0.0.1:{args.port}", grace=args.grace, health=True, reflection=True
    )
    server.add(DummyStreamService())
    await server.start()
    print(f"PORT {server.port}", flush=True)
    await server.serve()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
