"""The smallest grpcstream client: one GetStatus call.

Run: ``python -m examples.unary.client --target 127.0.0.1:50051 --service api``.
"""

from __future__ import annotations

import argparse
import asyncio

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import StatusRequest


async def main(target: str, service: str) -> int:
    """Ask the server at ``target`` for the status of ``service``; return the exit code."""
    async with grpcstream.connect(target) as channel:
        client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=5.0)
        try:
            status = await client.unary(client.stub.GetStatus, StatusRequest(service=service))
        except grpcstream.RpcError as error:  # typed: InvalidArgument, Unavailable, ...
            print(f"error: {error.code.name}: {error.details}")
            return 1
        print(f"{status.service}: {'healthy' if status.healthy else 'unhealthy'}")
        return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--service", default="api")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.target, args.service)))
