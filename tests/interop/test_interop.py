"""The official gRPC interop cases, in both directions, against grpc-js and raw grpc.aio.

Four directions, each running the 14 cases of grpc/grpc ``doc/interop-test-descriptions.md``:

* the grpcstream TestService server (``examples/interop/server.py``) called by the grpc-js
  client (``tests/interop/node/client.js``) and by a raw grpc.aio client;
* the grpcstream interop client (``examples/interop/client.py``) calling the grpc-js
  server (``tests/interop/node/server.js``) and a raw grpc.aio server.

Each direction runs once per session (real processes and sockets); every case is then its
own test, so a failure names the direction and the case. The negative controls run the
grpcstream client against deliberately faulty servers: it must fail exactly the cases
that check what the fault breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest

import grpcstream
from examples.interop.client import CASES, run_cases
from examples.interop.server import TestService
from grpcstream_interop.messages_pb2 import EchoStatus, Payload

from .node_peers import node_executable, node_server, run_node_client
from .raw_peers import RAW_CASES, raw_test_server, run_raw_cases

Results = dict[str, str | None]


@contextlib.asynccontextmanager
async def grpcstream_server(service: TestService | None = None) -> AsyncIterator[str]:
    """The grpcstream TestService on a StreamServer on a free port; yields its target."""
    server = grpcstream.StreamServer("127.0.0.1:0", grace=1.0)
    server.add(service or TestService())  # type: ignore[abstract]
    async with server:
        yield f"127.0.0.1:{server.port}"


async def _server_to(client: Callable[[str], Awaitable[Results]]) -> Results:
    async with grpcstream_server() as target:
        return await client(target)


async def _client_to(server: Callable[[], contextlib.AbstractAsyncContextManager[str]]) -> Results:
    async with server() as target:
        return await run_cases(target)


DIRECTIONS: dict[str, Callable[[], Coroutine[Any, Any, Results]]] = {
    "grpcstream-server<-grpc-js-client": lambda: _server_to(run_node_client),
    "grpcstream-server<-grpc.aio-client": lambda: _server_to(run_raw_cases),
    "grpcstream-client->grpc-js-server": lambda: _client_to(node_server),
    "grpcstream-client->grpc.aio-server": lambda: _client_to(raw_test_server),
}


@functools.cache
def matrix(direction: str) -> Results:
    """Run one direction's 14 cases (once per session) and return each case's outcome."""
    return asyncio.run(DIRECTIONS[direction]())


def test_every_peer_runs_the_same_14_cases() -> None:
    assert list(CASES) == list(RAW_CASES)
    assert len(CASES) == 14


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_interop(direction: str, case: str) -> None:
    if "grpc-js" in direction:
        node_executable()  # skips with a message locally, fails in CI, without Node
    results = matrix(direction)
    assert case in results, f"{direction} did not run {case}"
    assert results[case] is None, f"{direction} {case}: {results[case]}"


class FaultyTestService(TestService):
    """A TestService with one deliberate fault: the negative controls run the interop
    client against it, to show the client checks what it claims to check."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def payload(self, size: int) -> Payload:
        if self.fault == "payload size":
            return super().payload(size + 1)
        return super().payload(size)

    def aggregate(self, total: int) -> int:
        return total + 1 if self.fault == "payload size" else total

    async def echo_metadata(self, context: grpcstream.CallContext) -> grpcstream.MetadataArg:
        if self.fault == "no metadata echo":
            return ()
        return await super().echo_metadata(context)

    def requested_status(self, status: EchoStatus, trailing: grpcstream.MetadataArg) -> None:
        if self.fault != "status ignored":
            super().requested_status(status, trailing)


EXPECTED_FAILURES = {
    "payload size": {
        "large_unary",
        "client_streaming",
        "server_streaming",
        "ping_pong",
        "cancel_after_first_response",
        "custom_metadata",
    },
    "no metadata echo": {"custom_metadata"},
    "status ignored": {"status_code_and_message", "special_status_message"},
}


@pytest.mark.parametrize("fault", list(EXPECTED_FAILURES))
async def test_the_client_fails_exactly_the_cases_a_faulty_server_breaks(fault: str) -> None:
    async with grpcstream_server(FaultyTestService(fault)) as target:  # type: ignore[abstract]
        results = await run_cases(target)
    failed = {case for case, failure in results.items() if failure is not None}
    assert failed == EXPECTED_FAILURES[fault], results
    assert len(results) == 14
