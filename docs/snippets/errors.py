"""Errors: catch what you can handle, by status class."""

from __future__ import annotations

import asyncio
import logging
import sys

import grpcstream
from grpcstream import StreamClient
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import Status, StatusRequest

LogClient = StreamClient["logs_pb2_grpc.LogServiceAsyncStub"]
log = logging.getLogger("dashboard")


# --8<-- [start:patterns]
async def status_or_none(logs: LogClient, service: str) -> Status | None:
    try:
        return await logs.unary(logs.stub.GetStatus, StatusRequest(service=service))
    except grpcstream.NotFound:
        return None  # an answer, not a failure
    except (grpcstream.Unavailable, grpcstream.DeadlineExceeded):
        raise  # transient: a RetryPolicy on the client handles these
    except grpcstream.RpcError as exc:
        log.warning("GetStatus failed: %s", exc)  # e.g. "PERMISSION_DENIED: ..."
        raise


# --8<-- [end:patterns]


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=10.0)
        print("api:", await status_or_none(logs, "api") is not None)
        print("missing:", await status_or_none(logs, "missing"))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
