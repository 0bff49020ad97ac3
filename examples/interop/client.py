"""The official gRPC interop client cases, written with grpcstream's public API.

``doc/interop-test-descriptions.md`` (grpc/grpc) defines each case: what to send to
``grpc.testing.TestService`` and what to check. Each case here raises
:class:`InteropFailure` when the server answers anything else, so a wrong payload size,
a missing metadata echo or an ignored status fails it.

Run: ``python -m examples.interop.client 127.0.0.1:50051 [case ...]``; it prints one line
per case and exits 1 if any case failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpcstream
from grpcstream_interop import test_pb2_grpc
from grpcstream_interop.empty_pb2 import Empty
from grpcstream_interop.messages_pb2 import (
    EchoStatus,
    Payload,
    ResponseParameters,
    SimpleRequest,
    StreamingInputCallRequest,
    StreamingOutputCallRequest,
)

REQUEST_SIZES = (27182, 8, 1828, 45904)
RESPONSE_SIZES = (31415, 9, 2653, 58979)
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
CALL_TIMEOUT = 10.0
_T = TypeVar("_T")


class InteropFailure(AssertionError):
    """A case saw something other than what the interop description requires."""


def check(condition: bool, message: str) -> None:
    """Fail the case with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InteropFailure(message)


def payload(size: int) -> Payload:
    """``size`` zero bytes."""
    return Payload(body=bytes(size))


def check_payload(received: Payload, size: int, what: str) -> None:
    """The payload is ``size`` zero bytes."""
    check(len(received.body) == size, f"{what}: {len(received.body)} bytes, expected {size}")
    check(received.body == bytes(size), f"{what}: the payload is not all zero bytes")


@dataclass(frozen=True)
class Peers:
    """The clients a case calls through."""

    test: grpcstream.StreamClient[test_pb2_grpc.TestServiceAsyncStub]
    unimplemented: grpcstream.StreamClient[test_pb2_grpc.UnimplementedServiceAsyncStub]


Case = Callable[[Peers], Awaitable[None]]


def duplex_request(
    response_size: int, request_size: int, status: EchoStatus | None = None
) -> StreamingOutputCallRequest:
    """A FullDuplexCall request asking for one response of ``response_size`` bytes."""
    return StreamingOutputCallRequest(
        response_parameters=[ResponseParameters(size=response_size)],
        payload=payload(request_size),
        response_status=status,
    )


async def empty_unary(peers: Peers) -> None:
    """EmptyCall with an empty request returns an empty response."""
    response = await peers.test.unary(peers.test.stub.EmptyCall, Empty())
    check(response == Empty(), f"expected an empty response, got {response}")


async def large_unary(peers: Peers) -> None:
    """UnaryCall: 271828 bytes out, 314159 bytes back."""
    test = peers.test
    request = SimpleRequest(response_size=314159, payload=payload(271828))
    response = await test.unary(test.stub.UnaryCall, request)
    check_payload(response.payload, 314159, "response")


async def client_streaming(peers: Peers) -> None:
    """StreamingInputCall: four payloads out, their total size (74922) back."""
    test = peers.test
    async with test.client_stream(test.stub.StreamingInputCall) as upload:
        for size in REQUEST_SIZES:
            await upload.send(StreamingInputCallRequest(payload=payload(size)))
        response = await upload.close_and_receive()
    total = response.aggregated_payload_size
    check(total == 74922, f"aggregated_payload_size {total}, expected 74922")


async def server_streaming(peers: Peers) -> None:
    """StreamingOutputCall: four responses of the requested sizes, in order."""
    test = peers.test
    request = StreamingOutputCallRequest(
        response_parameters=[ResponseParameters(size=size) for size in RESPONSE_SIZES]
    )
    async with test.server_stream(test.stub.StreamingOutputCall, request) as responses:
        received = [response async for response in responses]
    check(len(received) == 4, f"{len(received)} responses, expected 4")
    for response, size in zip(received, RESPONSE_SIZES, strict=True):
        check_payload(response.payload, size, "response")


async def ping_pong(peers: Peers) -> None:
    """FullDuplexCall: each request answered before the next is sent."""
    test = peers.test
    async with test.bidi_stream(test.stub.FullDuplexCall) as duplex:
        for request_size, response_size in zip(REQUEST_SIZES, RESPONSE_SIZES, strict=True):
            await duplex.send(duplex_request(response_size, request_size))
            response = await duplex.receive()
            check_payload(response.payload, response_size, "response")
        await duplex.close_send()
        extra = [response async for response in duplex]
    check(not extra, f"{len(extra)} responses after the half-close, expected none")
    code = await duplex.code()
    check(code is grpcstream.StatusCode.OK, f"status {code.name}, expected OK")


async def empty_stream(peers: Peers) -> None:
    """FullDuplexCall half-closed at once: no responses, status OK."""
    test = peers.test
    async with test.bidi_stream(test.stub.FullDuplexCall) as duplex:
        await duplex.close_send()
        received = [response async for response in duplex]
    check(not received, f"{len(received)} responses, expected none")
    code = await duplex.code()
    check(code is grpcstream.StatusCode.OK, f"status {code.name}, expected OK")


async def cancel_after_begin(peers: Peers) -> None:
    """StreamingInputCall cancelled before anything is sent: the result is CANCELLED."""
    test = peers.test
    async with test.client_stream(test.stub.StreamingInputCall) as upload:
        upload.cancel()
        try:
            await upload.close_and_receive()
        except grpcstream.Cancelled:
            pass
        else:
            raise InteropFailure("close_and_receive() after cancel() returned a response")
    code = await upload.code()
    check(code is grpcstream.StatusCode.CANCELLED, f"status {code.name}, expected CANCELLED")


async def cancel_after_first_response(peers: Peers) -> None:
    """FullDuplexCall cancelled after the first response: reading then gives CANCELLED."""
    test = peers.test
    async with test.bidi_stream(test.stub.FullDuplexCall) as duplex:
        await duplex.send(duplex_request(31415, 27182))
        first = await duplex.receive()
        check_payload(first.payload, 31415, "first response")
        duplex.cancel()
        try:
            await duplex.receive()
        except grpcstream.Cancelled:
            pass
        else:
            raise InteropFailure("a response arrived after cancel()")
    code = await duplex.code()
    check(code is grpcstream.StatusCode.CANCELLED, f"status {code.name}, expected CANCELLED")


async def timeout_on_sleeping_server(peers: Peers) -> None:
    """FullDuplexCall with a 1 ms deadline on a server that never answers: DEADLINE_EXCEEDED."""
    test = peers.test
    try:
        async with test.bidi_stream(test.stub.FullDuplexCall, timeout=0.001) as duplex:
            await duplex.send(StreamingOutputCallRequest(payload=payload(27182)))
            await duplex.receive()
    except grpcstream.DeadlineExceeded:
        return
    raise InteropFailure("a response arrived from a server that should be sleeping")


async def custom_metadata(peers: Peers) -> None:
    """UnaryCall and FullDuplexCall echo the client's initial and trailing metadata."""
    test = peers.test
    metadata = (ECHO_INITIAL, ECHO_TRAILING)
    request = SimpleRequest(response_size=314159, payload=payload(271828))
    call = test.unary_call(test.stub.UnaryCall, request, metadata=metadata)
    check_payload((await call).payload, 314159, "unary response")
    check_echo(await call.initial_metadata(), await call.trailing_metadata())
    async with test.bidi_stream(test.stub.FullDuplexCall, metadata=metadata) as duplex:
        await duplex.send(duplex_request(314159, 271828))
        await duplex.close_send()
        received = [response async for response in duplex]
    check(len(received) == 1, f"{len(received)} responses, expected 1")
    check_payload(received[0].payload, 314159, "duplex response")
    check_echo(await duplex.initial_metadata(), await duplex.trailing_metadata())


def check_echo(
    initial: Sequence[tuple[str, str | bytes]], trailing: Sequence[tuple[str, str | bytes]]
) -> None:
    """The initial metadata holds the echo-initial pair, the trailers the -bin pair."""
    check(ECHO_INITIAL in initial, f"initial metadata {initial} lacks {ECHO_INITIAL}")
    check(ECHO_TRAILING in trailing, f"trailing metadata {trailing} lacks {ECHO_TRAILING}")


async def expect_status(call: Awaitable[_T], code: grpcstream.StatusCode, message: str) -> None:
    """Awaiting ``call`` raises the typed error for ``code`` with exactly ``message``."""
    expected = type(grpcstream.status_error(code))
    try:
        await call
    except expected as error:
        check(error.details == message, f"details {error.details!r}, expected {message!r}")
        return
    except grpcstream.RpcError as error:
        raise InteropFailure(f"status {error.code.name}, expected {code.name}") from error
    raise InteropFailure(f"the call succeeded, expected {code.name}")


async def status_code_and_message(peers: Peers) -> None:
    """A requested status (UNKNOWN, "test status message") comes back on both call styles."""
    test = peers.test
    status = EchoStatus(code=2, message="test status message")
    request = SimpleRequest(response_status=status)
    unknown = grpcstream.StatusCode.UNKNOWN
    await expect_status(test.unary(test.stub.UnaryCall, request), unknown, status.message)

    async def duplex() -> None:
        async with test.bidi_stream(test.stub.FullDuplexCall) as stream:
            await stream.send(StreamingOutputCallRequest(response_status=status))
            await stream.close_send()
            async for _ in stream:
                pass

    await expect_status(duplex(), unknown, status.message)


async def special_status_message(peers: Peers) -> None:
    """A status message with whitespace and non-ASCII characters arrives unchanged."""
    test = peers.test
    request = SimpleRequest(response_status=EchoStatus(code=2, message=SPECIAL_MESSAGE))
    unknown = grpcstream.StatusCode.UNKNOWN
    await expect_status(test.unary(test.stub.UnaryCall, request), unknown, SPECIAL_MESSAGE)


async def unimplemented_method(peers: Peers) -> None:
    """TestService.UnimplementedCall answers UNIMPLEMENTED."""
    test = peers.test
    try:
        await test.unary(test.stub.UnimplementedCall, Empty())
    except grpcstream.Unimplemented:
        return
    raise InteropFailure("UnimplementedCall succeeded")


async def unimplemented_service(peers: Peers) -> None:
    """UnimplementedService.UnimplementedCall answers UNIMPLEMENTED."""
    other = peers.unimplemented
    try:
        await other.unary(other.stub.UnimplementedCall, Empty())
    except grpcstream.Unimplemented:
        return
    raise InteropFailure("UnimplementedService.UnimplementedCall succeeded")


CASES: dict[str, Case] = {
    case.__name__: case
    for case in (
        empty_unary,
        large_unary,
        client_streaming,
        server_streaming,
        ping_pong,
        empty_stream,
        cancel_after_begin,
        cancel_after_first_response,
        timeout_on_sleeping_server,
        custom_metadata,
        status_code_and_message,
        special_status_message,
        unimplemented_method,
        unimplemented_service,
    )
}
"""The 14 cases, in the order of the interop description."""


async def run_cases(target: str, names: Sequence[str] = ()) -> dict[str, str | None]:
    """Run the named cases (all by default) against ``target``, one after another.

    Returns:
        For each case, ``None`` if it passed or the reason it failed.
    """
    results: dict[str, str | None] = {}
    async with grpcstream.connect(target) as channel:
        peers = Peers(
            grpcstream.StreamClient(channel, test_pb2_grpc.TestServiceStub, timeout=CALL_TIMEOUT),
            grpcstream.StreamClient(
                channel, test_pb2_grpc.UnimplementedServiceStub, timeout=CALL_TIMEOUT
            ),
        )
        for name in names or CASES:
            try:
                await CASES[name](peers)
            except (InteropFailure, grpcstream.GrpcStreamError) as error:
                results[name] = f"{type(error).__name__}: {error}"
            else:
                results[name] = None
    return results


async def main(target: str, names: Sequence[str]) -> int:
    """Run the cases and print one line each; return the exit code (1 if any failed)."""
    results = await run_cases(target, names)
    for name, failure in results.items():
        print(f"{name}: {'PASS' if failure is None else 'FAIL ' + failure}", flush=True)
    return 0 if all(failure is None for failure in results.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port of a grpc.testing.TestService server")
    parser.add_argument("cases", nargs="*", help=f"default: all of {', '.join(CASES)}")
    arguments = parser.parse_args()
    unknown = [name for name in arguments.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; the cases are {', '.join(CASES)}")
    sys.exit(asyncio.run(main(arguments.target, arguments.cases)))
