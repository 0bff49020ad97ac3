"""The smallest grpcstream server: LogService.GetStatus only.

Run: ``python -m examples.unary.server --port 50051``. Stop it with Ctrl-C (or SIGTERM);
it drains and exits 0. The other LogService methods answer UNIMPLEMENTED.
"""

from __future__ import annotations

import argparse
import asyncio

import grpcstream
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import Status, StatusRequest


class StatusService(grpcstream.StreamServicer, logs_pb2_grpc.LogServiceServicer):
    """Answers GetStatus; everything else stays unimplemented."""

    @grpcstream.unary
    async def GetStatus(self, request: StatusRequest, context: grpcstream.CallContext) -> Status:
        """Report the requested service as healthy."""
        if not request.service:
            raise grpcstream.InvalidArgument("service must not be empty")
        return Status(service=request.service, healthy=True)


async def main(port: int) -> None:
    """Serve on 127.0.0.1:``port`` (0 picks a free port) until SIGINT/SIGTERM."""
    server = grpcstream.StreamServer(f"127.0.0.1:{port}")
    # The generated type stubs mark every RPC abstract; the ones not written here answer
    # UNIMPLEMENTED at run time.
    server.add(StatusService())  # type: ignore[abstract]
    await server.start()
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    await server.serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    asyncio.run(main(parser.parse_args().port))
