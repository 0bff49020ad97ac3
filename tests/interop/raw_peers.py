"""The interop peers written with raw grpc.aio: a TestService server and the 14 client cases.

They are the reference the grpcstream server and client are compared with, written the
way grpc.aio's own documentation writes services and calls, with nothing from grpcstream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
import grpc.aio

from grpcstream_interop import test_pb2_grpc
from grpcstream_interop.empty_pb2 import Empty
from grpcstream_interop.messages_pb2 import (
    EchoStatus,
    Payload,
    ResponseParameters,
    SimpleRequest,
    SimpleResponse,
    StreamingInputCallRequest,
    StreamingInputCallResponse,
    StreamingOutputCallRequest,
    StreamingOutputCallResponse,
)

REQUEST_SIZES = (27182, 8, 1828, 45904)
RESPONSE_SIZES = (31415, 9, 2653, 58979)
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
TIMEOUT = 10.0
_CODES = {code.value[0]: code for code in grpc.StatusCode}

Context = grpc.aio.ServicerContext[object, object]


async def _echo(context: Context) -> tuple[tuple[str, str | bytes], ...]:
    received = tuple(context.invocation_metadata() or ())
    initial = tuple((k, v) for k, v in received if k == ECHO_INITIAL[0])
    if initial:
        await context.send_initial_metadata(initial)
    trailing = tuple((k, v) for k, v in received if k == ECHO_TRAILING[0])
    context.set_trailing_metadata(trailing)
    return trailing


async def _status(status: EchoStatus, context: Context, trailing: tuple[object, ...]) -> None:
    if status.code:
        await context.abort(_CODES[status.code], status.message, trailing)  # type: ignore[arg-type]


class RawTestService(test_pb2_grpc.TestServiceServicer):
    """TestService on plain grpc.aio handlers."""

    async def EmptyCall(self, request: Empty, context: Context) -> Empty:
        return Empty()

    async def UnaryCall(self, request: SimpleRequest, context: Context) -> SimpleResponse:
        trailing = await _echo(context)
        await _status(request.response_status, context, trailing)
        return SimpleResponse(payload=Payload(body=bytes(request.response_size)))

    async def StreamingOutputCall(
        self, request: StreamingOutputCallRequest, context: Context
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        trailing = await _echo(context)
        for entry in request.response_parameters:
            yield StreamingOutputCallResponse(payload=Payload(body=bytes(entry.size)))
        await _status(request.response_status, context, trailing)

    async def StreamingInputCall(
        self, request_iterator: AsyncIterator[StreamingInputCallRequest], context: Context
    ) -> StreamingInputCallResponse:
        total = 0
        async for request in request_iterator:
            total += len(request.payload.body)
        return StreamingInputCallResponse(aggregated_payload_size=total)

    async def FullDuplexCall(
        self, request_iterator: AsyncIterator[StreamingOutputCallRequest], context: Context
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        trailing = await _echo(context)
        async for request in request_iterator:
            await _status(request.response_status, context, trailing)
            for entry in request.response_parameters:
                yield StreamingOutputCallResponse(payload=Payload(body=bytes(entry.size)))


@contextlib.asynccontextmanager
async def raw_test_server() -> AsyncIterator[str]:
    """A grpc.aio server with RawTestService on an ephemeral port; yields its target."""
    server = grpc.aio.server()
    test_pb2_grpc.add_TestServiceServicer_to_server(RawTestService(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


class Failure(AssertionError):
    """The server answered something the interop description does not allow."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def _sizes(responses: Sequence[StreamingOutputCallResponse]) -> list[int]:
    return [len(response.payload.body) for response in responses]


def _duplex(response_size: int, request_size: int) -> StreamingOutputCallRequest:
    return StreamingOutputCallRequest(
        response_parameters=[ResponseParameters(size=response_size)],
        payload=Payload(body=bytes(request_size)),
    )


async def _code(call: Awaitable[object], code: grpc.StatusCode, details: str | None = None) -> None:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        _check(error.code() is code, f"status {error.code()}, expected {code}")
        if details is not None:
            _check(error.details() == details, f"details {error.details()!r}")
        return
    raise Failure(f"the call succeeded, expected {code}")


Stubs = tuple["test_pb2_grpc.TestServiceAsyncStub", "test_pb2_grpc.UnimplementedServiceAsyncStub"]


async def empty_unary(stubs: Stubs) -> None:
    _check(await stubs[0].EmptyCall(Empty(), timeout=TIMEOUT) == Empty(), "not empty")


async def large_unary(stubs: Stubs) -> None:
    request = SimpleRequest(response_size=314159, payload=Payload(body=bytes(271828)))
    response = await stubs[0].UnaryCall(request, timeout=TIMEOUT)
    _check(response.payload.body == bytes(314159), "wrong payload")


async def client_streaming(stubs: Stubs) -> None:
    async def requests() -> AsyncIterator[StreamingInputCallRequest]:
        for size in REQUEST_SIZES:
            yield StreamingInputCallRequest(payload=Payload(body=bytes(size)))

    response = await stubs[0].StreamingInputCall(requests(), timeout=TIMEOUT)
    _check(response.aggregated_payload_size == 74922, f"{response.aggregated_payload_size}")


async def server_streaming(stubs: Stubs) -> None:
    request = StreamingOutputCallRequest(
        response_parameters=[ResponseParameters(size=size) for size in RESPONSE_SIZES]
    )
    call = stubs[0].StreamingOutputCall(request, timeout=TIMEOUT)
    _check(_sizes([r async for r in call]) == list(RESPONSE_SIZES), "wrong responses")


async def ping_pong(stubs: Stubs) -> None:
    call = stubs[0].FullDuplexCall(timeout=TIMEOUT)
    for request_size, response_size in zip(REQUEST_SIZES, RESPONSE_SIZES, strict=True):
        await call.write(_duplex(response_size, request_size))
        response = await call.read()
        _check(isinstance(response, StreamingOutputCallResponse), "no response")
        assert isinstance(response, StreamingOutputCallResponse)
        _check(len(response.payload.body) == response_size, "wrong size")
    await call.done_writing()
    _check(await call.read() is grpc.aio.EOF, "extra response")
    _check(await call.code() is grpc.StatusCode.OK, "not OK")


async def empty_stream(stubs: Stubs) -> None:
    call = stubs[0].FullDuplexCall(timeout=TIMEOUT)
    await call.done_writing()
    _check(await call.read() is grpc.aio.EOF, "a response arrived")
    _check(await call.code() is grpc.StatusCode.OK, "not OK")


async def cancel_after_begin(stubs: Stubs) -> None:
    call = stubs[0].StreamingInputCall(timeout=TIMEOUT)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    _check(await call.code() is grpc.StatusCode.CANCELLED, f"{await call.code()}")


async def cancel_after_first_response(stubs: Stubs) -> None:
    call = stubs[0].FullDuplexCall(timeout=TIMEOUT)
    await call.write(_duplex(31415, 27182))
    first = await call.read()
    _check(isinstance(first, StreamingOutputCallResponse), "no response")
    call.cancel()
    _check(await call.code() is grpc.StatusCode.CANCELLED, f"{await call.code()}")


async def timeout_on_sleeping_server(stubs: Stubs) -> None:
    call = stubs[0].FullDuplexCall(timeout=0.001)
    with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
        await call.write(StreamingOutputCallRequest(payload=Payload(body=bytes(27182))))
    try:
        await call.read()
    except grpc.aio.AioRpcError as error:
        code, details = error.code(), error.details()
    else:
        raise Failure("a response arrived from a server that should be sleeping")
    # grpc.aio's own hazard (the one grpcstream's client undoes): when the deadline
    # expires while a write is pending, it reports INTERNAL "Internal error from Core"
    # instead. The server cannot influence that, so this reference client accepts it.
    hidden = code is grpc.StatusCode.INTERNAL and details == "Internal error from Core"
    _check(code is grpc.StatusCode.DEADLINE_EXCEEDED or hidden, f"status {code}: {details}")


async def custom_metadata(stubs: Stubs) -> None:
    metadata = (ECHO_INITIAL, ECHO_TRAILING)
    request = SimpleRequest(response_size=314159, payload=Payload(body=bytes(271828)))
    unary = stubs[0].UnaryCall(request, metadata=metadata, timeout=TIMEOUT)
    await unary
    _check(ECHO_INITIAL in tuple(await unary.initial_metadata()), "initial not echoed")
    _check(ECHO_TRAILING in tuple(await unary.trailing_metadata()), "trailing not echoed")
    call = stubs[0].FullDuplexCall(metadata=metadata, timeout=TIMEOUT)
    await call.write(_duplex(314159, 271828))
    await call.done_writing()
    _check(_sizes([r async for r in call]) == [314159], "wrong responses")
    _check(ECHO_INITIAL in tuple(await call.initial_metadata()), "initial not echoed")
    _check(ECHO_TRAILING in tuple(await call.trailing_metadata()), "trailing not echoed")


async def status_code_and_message(stubs: Stubs) -> None:
    status = EchoStatus(code=2, message="test status message")
    unknown = grpc.StatusCode.UNKNOWN
    unary = stubs[0].UnaryCall(SimpleRequest(response_status=status), timeout=TIMEOUT)
    await _code(unary, unknown, status.message)
    call = stubs[0].FullDuplexCall(timeout=TIMEOUT)
    await call.write(StreamingOutputCallRequest(response_status=status))
    await call.done_writing()
    await _code(call.read(), unknown, status.message)


async def special_status_message(stubs: Stubs) -> None:
    request = SimpleRequest(response_status=EchoStatus(code=2, message=SPECIAL_MESSAGE))
    unary = stubs[0].UnaryCall(request, timeout=TIMEOUT)
    await _code(unary, grpc.StatusCode.UNKNOWN, SPECIAL_MESSAGE)


async def unimplemented_method(stubs: Stubs) -> None:
    await _code(stubs[0].UnimplementedCall(Empty(), timeout=TIMEOUT), grpc.StatusCode.UNIMPLEMENTED)


async def unimplemented_service(stubs: Stubs) -> None:
    await _code(stubs[1].UnimplementedCall(Empty(), timeout=TIMEOUT), grpc.StatusCode.UNIMPLEMENTED)


RAW_CASES: dict[str, Callable[[Stubs], Awaitable[None]]] = {
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


async def run_raw_cases(target: str) -> dict[str, str | None]:
    """Every case with a raw grpc.aio client; None for a pass, else the failure."""
    results: dict[str, str | None] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stubs: Stubs = (
            test_pb2_grpc.TestServiceStub(channel),
            test_pb2_grpc.UnimplementedServiceStub(channel),
        )
        for name, case in RAW_CASES.items():
            try:
                await case(stubs)
            except (Failure, grpc.aio.AioRpcError) as error:
                results[name] = f"{type(error).__name__}: {error}"
            else:
                results[name] = None
    return results
