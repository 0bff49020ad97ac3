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


# --8<-- [start:status_error]
def relay(code: int, message: str) -> None:
    """End a handler with a status that arrived as data (say, from another service)."""
    if code != 0:
        raise grpcstream.status_error(code, message)  # status_error(5, ...) is a NotFound


async def final_status(logs: LogClient) -> str:
    call = logs.unary_call(logs.stub.GetStatus, StatusRequest(service="api"))
    await call
    code = await call.code()  # no `import grpc` needed to compare it
    return "ok" if code is grpcstream.StatusCode.OK else code.name


# --8<-- [end:status_error]


async def main(target: str = "127.0.0.1:50051") -> None:
    async with grpcstream.connect(target) as channel:
        logs = StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=10.0)
        print("api:", await status_or_none(logs, "api") is not None)
        print("missing:", await status_or_none(logs, "missing"))
        print("final status:", await final_status(logs))
        try:
            relay(5, "no such log")
        except grpcstream.NotFound as exc:
            print("relayed:", repr(exc))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
