"""The in-memory side of the scale-out benchmark: one process that serves and publishes.

``python -m benchmarks.scale_out_server`` serves ``ReplicaLogs.TailBatches`` over an
in-process Broadcast, prints ``PORT <n>``, then reads commands on stdin, one a line:
``PUBLISH <count> <rate>`` publishes ``count`` timestamped entries (``rate`` entries/s,
0: as fast as it can) and prints ``PUBLISHED``; end of input stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpcstream
from benchmarks.scale_out_common import paced, stamped
from grpcstream_demo.logs_pb2 import LogEntry
from tests.support.redis_replica import ReplicaBatchService


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-entries", type=int, default=200_000)
    args = parser.parse_args()
    log = grpcstream.Broadcast(LogEntry, max_entries=args.max_entries)
    server = grpcstream.StreamServer("127.0.0.1:0", grace=0.5)
    server.add(ReplicaBatchService(log))
    await server.start()
    print(f"PORT {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        _, count, rate = line.split()
        async for _ in paced(int(count), float(rate)):
            log.publish(stamped())
        print("PUBLISHED", flush=True)
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
