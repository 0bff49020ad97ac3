"""Bearer-token auth (BearerToken, BearerAuth, current_principal), end to end."""

from __future__ import annotations

import asyncio
import logging

import grpc
import grpc.aio
import pytest

import grpcstream
from grpcstream_demo import dummy_pb2_grpc
from grpcstream_demo.dummy_pb2 import Reply, Req
from tests.security.pki import Pki, tls_client
from tests.support.servers import WAIT, DummyClient, serving, wait_until

GOOD_TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
SECRET = "tok-s3cr3t-never-log-me"


def verify_known(token: str) -> str | None:
    return GOOD_TOKENS.get(token)


class AuthedService(grpcstream.StreamServicer, dummy_pb2_grpc.DummyServiceServicer):
    """Records the principal each handler (and its spawned tasks) sees, and every call."""

    def __init__(self) -> None:
        self.calls = 0
        self.principals: list[object] = []
        self.fail_next = 0

    def _enter(self, principal: object) -> None:
        self.calls += 1
        self.principals.append(principal)
        assert grpcstream.current_principal() == principal
        if self.fail_next > 0:
            self.fail_next -= 1
            raise grpcstream.Unavailable("try again")

    @grpcstream.unary
    async def Unary(self, request: Req, context: grpcstream.CallContext) -> Reply:
        self._enter(context.principal)
        return Reply(value=str(context.principal))

    @grpcstream.server_streaming
    async def ServerStream(self, request: Req, stream: grpcstream.ServerStream[Reply]) -> None:
        self._enter(stream.principal)

        async def produce() -> None:  # a spawned task inherits the principal
            await stream.send(Reply(value=str(grpcstream.current_principal())))

        stream.spawn(produce())

    @grpcstream.client_streaming
    async def ClientStream(
        self, requests: grpcstream.RequestStream[Req], context: grpcstream.CallContext
    ) -> Reply:
        self._enter(context.principal)
        return Reply(value=str(context.principal), seq=len([r async for r in requests]))

    @grpcstream.bidi_streaming
    async def Bidi(
        self, requests: grpcstream.RequestStream[Req], stream: grpcstream.ServerStream[Reply]
    ) -> None:
        self._enter(stream.principal)
        async for _ in requests:
            await stream.send(Reply(value=str(stream.principal)))


class RawService(dummy_pb2_grpc.DummyServiceServicer):
    """A plain grpc.aio servicer on a StreamServer: auth covers it too."""

    def __init__(self) -> None:
        self.calls = 0

    async def Unary(self, request: Req, context: grpc.aio.ServicerContext[Req, Reply]) -> Reply:
        self.calls += 1
        return Reply(value=str(grpcstream.current_principal()))


async def principals_of_four_patterns(client: DummyClient) -> list[str]:
    """One call of each pattern; the principal each handler reported."""
    stub = client.stub
    seen = [(await client.unary(stub.Unary, Req())).value]
    async with client.server_stream(stub.ServerStream, Req()) as replies:
        seen.extend([reply.value async for reply in replies])
    async with client.client_stream(stub.ClientStream) as upload:
        await upload.send(Req(seq=1))
        seen.append((await upload.close_and_receive()).value)
    async with client.bidi_stream(stub.Bidi) as chat:
        await chat.send(Req(seq=1))
        await chat.close_send()
        seen.extend([reply.value async for reply in chat])
    return seen


async def test_bearer_token_authenticates_all_four_patterns(pki: Pki) -> None:
    servicer = AuthedService()
    auth = grpcstream.BearerAuth(verify_known)
    async with (
        serving(servicer, tls=pki.server_tls(), auth=auth) as (_, target),
        tls_client(target, pki.client_tls(), auth=grpcstream.BearerToken("tok-alice")) as client,
    ):
        assert await principals_of_four_patterns(client) == ["alice"] * 4
    assert servicer.principals == ["alice"] * 4


async def test_bad_or_missing_tokens_are_rejected_before_any_handler_runs() -> None:
    servicer = AuthedService()
    async with serving(servicer, auth=grpcstream.BearerAuth(verify_known)) as (_, target):
        for metadata in (
            (),  # no header
            (("authorization", "Bearer tok-mallory"),),  # verify says no
            (("authorization", "Basic dG9rLWFsaWNl"),),  # another scheme
            (("authorization", "Bearer "),),  # empty token
            (("authorization", "Bearer tok-alice"), ("authorization", "Bearer tok-bob")),
        ):
            async with tls_client(target, None, metadata=metadata) as client:
                stub = client.stub
                with pytest.raises(grpcstream.Unauthenticated) as caught:
                    await client.unary(stub.Unary, Req())
                assert caught.value.details == "missing or invalid bearer token"
                with pytest.raises(grpcstream.Unauthenticated):
                    async with client.server_stream(stub.ServerStream, Req()) as replies:
                        async for _ in replies:
                            pass
                with pytest.raises(grpcstream.Unauthenticated):
                    # Rejected before the client sends anything or half-closes.
                    async with client.client_stream(stub.ClientStream) as upload:
                        await upload.close_and_receive()
                with pytest.raises(grpcstream.Unauthenticated):
                    async with client.bidi_stream(stub.Bidi) as chat:
                        async for _ in chat:
                            pass
    assert servicer.calls == 0


async def test_auth_covers_plain_grpc_handlers_and_leaves_health_open() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    raw = RawService()  # type: ignore[abstract]  # only Unary is served
    auth = grpcstream.BearerAuth(verify_known)
    async with serving(raw, auth=auth, health=True) as (_, target):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = dummy_pb2_grpc.DummyServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Unary(Req(), timeout=WAIT)
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert raw.calls == 0
            reply = await stub.Unary(
                Req(), metadata=(("authorization", "bearer tok-bob"),), timeout=WAIT
            )
            assert reply.value == "bob"  # the scheme is case-insensitive
            health = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
            assert status.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_is_public_by_default_too() -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    assert "grpc.reflection.v1alpha.ServerReflection" in grpcstream.DEFAULT_PUBLIC_SERVICES
    auth = grpcstream.BearerAuth(verify_known)
    async with serving(AuthedService(), auth=auth, reflection=True) as (_, target):
        async with grpc.aio.insecure_channel(target) as channel:
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                timeout=WAIT
            )
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await call.done_writing()
            response = await call.read()
            assert isinstance(response, reflection_pb2.ServerReflectionResponse)
            names = {service.name for service in response.list_services_response.service}
            assert "grpcstream.demo.testing.v1.DummyService" in names
            assert await call.code() is grpc.StatusCode.OK


async def test_public_services_opens_exactly_the_services_named() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    servicer = AuthedService()
    auth = grpcstream.BearerAuth(
        verify_known, public_services=("grpcstream.demo.testing.v1.DummyService",)
    )
    async with serving(servicer, auth=auth, health=True) as (_, target):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = dummy_pb2_grpc.DummyServiceStub(channel)
            assert (await stub.Unary(Req(), timeout=WAIT)).value == "None"  # no token needed
            health = health_pb2_grpc.HealthStub(channel)  # no longer in the list: closed
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            token = (("authorization", "Bearer tok-alice"),)
            status = await health.Check(
                health_pb2.HealthCheckRequest(), metadata=token, timeout=WAIT
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert servicer.principals == [None]


async def test_a_token_callable_runs_for_every_call_and_may_refresh() -> None:
    issued: list[str] = []

    def fresh_token() -> str:
        issued.append(f"tok-{len(issued) + 1}")
        return issued[-1]

    async def fresh_token_async() -> str:
        return fresh_token()

    def verify(token: str) -> str:
        return token.replace("tok-", "user-")

    servicer = AuthedService()
    async with serving(servicer, auth=grpcstream.BearerAuth(verify)) as (_, target):
        for source in (fresh_token, fresh_token_async):
            async with tls_client(target, None, auth=grpcstream.BearerToken(source)) as client:
                await principals_of_four_patterns(client)
    assert issued == [f"tok-{n}" for n in range(1, 9)]
    assert servicer.principals == [f"user-{n}" for n in range(1, 9)]


async def test_every_retry_attempt_gets_a_fresh_token() -> None:
    issued: list[str] = []

    async def fresh_token() -> str:
        issued.append(f"tok-{len(issued) + 1}")
        return issued[-1]

    async def no_sleep(delay: float) -> None:
        pass

    servicer = AuthedService()
    policy = grpcstream.RetryPolicy(sleep=no_sleep)
    async with (
        serving(servicer, auth=grpcstream.BearerAuth(lambda token: token)) as (_, target),
        tls_client(target, None, auth=grpcstream.BearerToken(fresh_token), retry=policy) as client,
    ):
        stub = client.stub
        servicer.fail_next = 1
        assert (await client.unary(stub.Unary, Req())).value == "tok-2"
        servicer.fail_next = 1
        async with client.server_stream(stub.ServerStream, Req()) as replies:
            assert [reply.value async for reply in replies] == ["tok-4"]
        servicer.fail_next = 1
        async with client.client_stream(stub.ClientStream) as upload:
            await upload.send(Req(seq=1))
            assert (await upload.close_and_receive()).value == "tok-6"
        servicer.fail_next = 1
        async with client.bidi_stream(stub.Bidi) as chat:
            await chat.send(Req(seq=1))
            await chat.close_send()
            assert [reply.value async for reply in chat] == ["tok-8"]
    assert servicer.principals == [f"tok-{n}" for n in range(1, 9)]


async def test_unary_call_with_an_async_token_starts_once_the_token_is_there() -> None:
    release = asyncio.Event()

    async def slow_token() -> str:
        await release.wait()
        return "tok-alice"

    async with (
        serving(AuthedService(), auth=grpcstream.BearerAuth(verify_known)) as (_, target),
        tls_client(target, None, auth=grpcstream.BearerToken(slow_token)) as client,
    ):
        call = client.unary_call(client.stub.Unary, Req())
        assert not call.done()
        release.set()
        assert (await asyncio.wait_for(call, WAIT)).value == "alice"
        assert await call.code() is grpc.StatusCode.OK
        assert call.done()
        release.clear()
        pending = client.unary_call(client.stub.Unary, Req())
        assert client.open_streams == 1
        assert pending.cancel()
        with pytest.raises(grpcstream.Cancelled):
            await asyncio.wait_for(pending, WAIT)
        await wait_until(lambda: client.open_streams == 0)


async def test_a_failing_token_source_fails_the_call_not_the_client() -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("token endpoint unreachable")
        return "" if calls == 2 else "tok-alice"

    async with (
        serving(AuthedService(), auth=grpcstream.BearerAuth(verify_known)) as (_, target),
        tls_client(target, None, auth=grpcstream.BearerToken(flaky)) as client,
    ):
        stream = client.server_stream(client.stub.ServerStream, Req())
        with pytest.raises(OSError, match="unreachable"):
            async with stream:
                pass
        assert client.open_streams == 0  # forgotten at once, not when garbage-collected
        del stream
        with pytest.raises(ValueError, match="token is empty"):
            await client.unary(client.stub.Unary, Req())
        assert (await client.unary(client.stub.Unary, Req())).value == "alice"
        assert client.open_streams == 0


async def test_verify_errors_map_to_statuses_and_false_rejects() -> None:
    async def verify(token: str) -> object:
        if token == "tok-down":
            raise grpcstream.Unavailable("identity provider unreachable")
        if token == "tok-bug":
            raise KeyError(token)
        return token == "tok-alice"  # a boolean check: False must not let anyone in

    servicer = AuthedService()
    async with serving(servicer, auth=grpcstream.BearerAuth(verify)) as (_, target):
        for token, error in (
            ("tok-down", grpcstream.Unavailable),
            ("tok-bug", grpcstream.Internal),
            ("tok-mallory", grpcstream.Unauthenticated),
        ):
            async with tls_client(target, None, auth=grpcstream.BearerToken(token)) as client:
                with pytest.raises(error):
                    await client.unary(client.stub.Unary, Req())
        async with tls_client(target, None, auth=grpcstream.BearerToken("tok-alice")) as client:
            assert (await client.unary(client.stub.Unary, Req())).value == "True"
    assert servicer.calls == 1


async def test_tokens_never_reach_logs_or_error_details(caplog: pytest.LogCaptureFixture) -> None:
    def verify(token: str) -> str | None:
        if token == SECRET:
            raise ValueError(f"cannot decode token {token!r}")  # a careless verify hook
        return None

    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with serving(AuthedService(), auth=grpcstream.BearerAuth(verify)) as (_, target):
        for token in (SECRET, SECRET + "x"):
            async with tls_client(target, None, auth=grpcstream.BearerToken(token)) as client:
                with pytest.raises(grpcstream.RpcError) as caught:
                    await client.unary(client.stub.Unary, Req())
                texts += [str(caught.value), caught.value.details, repr(caught.value)]
                texts.append(repr(caught.value.trailing_metadata))
    assert "BearerAuth verify raised" in caplog.text  # the failure is logged ...
    assert "[REDACTED]" in caplog.text  # ... with the token cut out
    assert SECRET not in caplog.text
    for text in texts:
        assert SECRET not in text
    assert SECRET not in repr(grpcstream.BearerToken(SECRET))
    assert SECRET not in repr(grpcstream.BearerAuth(verify))


def test_auth_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="empty"):
        grpcstream.BearerToken("")
    with pytest.raises(ValueError, match="whitespace"):
        grpcstream.BearerToken("tok\nx-injected: 1")
    with pytest.raises(TypeError, match="str or a callable"):
        grpcstream.BearerToken(b"tok")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="verify must be callable"):
        grpcstream.BearerAuth("tok")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BearerAuth"):
        grpcstream.StreamServer(auth=grpcstream.BearerToken("tok"))  # type: ignore[arg-type]


async def test_stream_client_auth_must_be_a_bearer_token() -> None:
    async with grpcstream.connect("127.0.0.1:1") as channel:
        with pytest.raises(TypeError, match="BearerToken"):
            grpcstream.StreamClient(
                channel,
                dummy_pb2_grpc.DummyServiceStub,
                auth="tok",  # type: ignore[arg-type]
            )


async def test_concurrent_calls_each_see_their_own_principal() -> None:
    servicer = AuthedService()
    async with (
        serving(servicer, auth=grpcstream.BearerAuth(verify_known)) as (_, target),
        tls_client(target, None, auth=grpcstream.BearerToken("tok-alice")) as alice,
        tls_client(target, None, auth=grpcstream.BearerToken("tok-bob")) as bob,
    ):

        async def whoami(client: DummyClient) -> str:
            async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                (value,) = [reply.value async for reply in replies]
                return value

        clients = [alice, bob] * 20
        seen = await asyncio.gather(*(whoami(client) for client in clients))
        assert seen == ["alice", "bob"] * 20


async def test_without_auth_the_principal_is_none() -> None:
    async with (
        serving(AuthedService()) as (_, target),
        tls_client(target, None) as client,
    ):
        assert await principals_of_four_patterns(client) == ["None"] * 4


async def test_closing_the_client_while_a_token_is_fetched_starts_no_call() -> None:
    release = asyncio.Event()

    async def slow_token() -> str:
        await release.wait()
        return "tok-alice"

    servicer = AuthedService()
    async with (
        serving(servicer, auth=grpcstream.BearerAuth(verify_known)) as (_, target),
        tls_client(target, None, auth=grpcstream.BearerToken(slow_token)) as client,
    ):
        fetching = asyncio.Event()

        async def consume() -> None:
            fetching.set()
            async with client.server_stream(client.stub.ServerStream, Req()) as replies:
                async for _ in replies:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.wait_for(fetching.wait(), WAIT)
        await client.aclose()
        release.set()
        with pytest.raises(grpcstream.StreamClosedError):
            await asyncio.wait_for(task, WAIT)
    assert servicer.calls == 0
