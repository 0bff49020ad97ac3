"""The documentation's code blocks run: every snippet file's ``main()`` against a real server.

Pages include the files under ``docs/snippets/`` with ``--8<--``; this module runs each one
against the plain grpc.aio LogService in ``docs/snippets/log_server.py`` on an ephemeral port
and checks what it printed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from docs.snippets import (
    backpressure,
    broadcast,
    cancellation,
    client,
    coalescing,
    errors,
    half_close,
    log_server,
    observability,
    patterns,
    pitfalls,
    quickstart,
    retry,
    scaling_out,
    security,
    server,
    shutdown,
)
from grpcstream.testing import ServeFactory
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import StatusRequest
from tests.support.redis_fixtures import redis_server
from tests.support.servers import REPO_ROOT, WAIT

SNIPPETS = REPO_ROOT / "docs" / "snippets"
DOCS = REPO_ROOT / "docs"

# Snippet module -> the lines its main() must print, in this order (each is a line's prefix).
EXPECTED: dict[str, list[str]] = {
    "broadcast": [
        "after 97: [98, 99, 100, 101]",
        "position: 101",
        "last 3: [99, 100, 101]",
        "after=42: position 42 is no longer held: the oldest entry held is 91",
        "on_gap='oldest': starts at 91 dropped 48",
        "drop_oldest: resumes at 41 dropped 40",
        "disconnect: the subscriber fell 50 entries behind (max_lag=10)",
        "block: publish() raises WouldBlock; apublish() waits",
        "block: apublish() returned position 61",
        "over gRPC: [1, 2, 3, 4, 5, 6]",
    ],
    "backpressure": [
        "uploaded: 1000",
        "statistics: SendQueueStatistics(queued=8, sent=0, max_size=8, waiting_senders=0, "
        "batches=0)",
        "sent 8, dropped 92",
    ],
    "cancellation": [
        "after timeout=0.5: DEADLINE_EXCEEDED",
        "after task.cancel(): CANCELLED",
        "after cancel(): CANCELLED",
        "asyncio.timeout expired; the RPC was cancelled",
    ],
    "client": [
        "first entries: [1, 2, 3, 4, 5]",
        "code: OK",
        "trailers: {'x-entries': '10'}",
        "follower ended: CANCELLED",
    ],
    "pitfalls": [
        "raw: concurrent writes failed the call:",  # the codes vary with timing
        "grpcstream: 4 writers, received 400",
        "raw: peak queued 10000, received 10000",
        "grpcstream: peak queued <= 64: True, received 10000",
        "raw: without done_writing(): DEADLINE_EXCEEDED",
        "grpcstream: received 3",
        "raw: call still running after break: True",
        "grpcstream: call still running after the block: False",
        "raw: NOT_FOUND via exc.code()",
        "raw: read 2",
        "grpcstream: NotFound: no service called 'missing'",
        "grpcstream: read 2",
    ],
    "retry": [
        "retry: attempt 1 failed with UNAVAILABLE",
        "retry: attempt 2 failed with UNAVAILABLE",
        "healthy: True",
        "retry: attempt 1 failed with UNAVAILABLE",
        "entries: [1, 2, 3, 4, 5, 6]",
    ],
    "server": [
        "healthy: True",
        "InvalidArgument: service is required",
        "entries: [96, 97, 98, 99, 100]",
        "uploaded: 50",
        "followed: [1, 2, 3]",
    ],
    "security": [
        "over mTLS with a token: healthy True",
        "bad token: UNAUTHENTICATED",
    ],
    "shutdown": [
        "open stream ended: UNAVAILABLE (server draining",
        "new call after the drain: UNAVAILABLE",
    ],
    "quickstart": [
        "healthy: True",
        "last seq read: 3",
        "uploaded: 100",
        "followed: api 1",
        "followed: api 3",
    ],
    "coalescing": [
        "received: 1000 entries, last 1000",
        "uploaded: 5000",
        "batches: ",
        "plain client read: 1000 entries",
        "plain client sent batches, the handler read: 2 entries",
    ],
    "errors": [
        "api: True",
        "missing: None",
        "final status: ok",
        "relayed: NotFound(code=NOT_FOUND, details='no such log')",
    ],
    "observability": [
        "received: 10",
        "messages sent: {'client': 1, 'server': 10}",
        "client span: grpcstream.demo.logs.v1.LogService/StreamLogs",
        "server span: grpcstream.demo.logs.v1.LogService/StreamLogs",
        "broadcast entries: {'grpcstream.broadcast.name': 'logs'} 3",
    ],
    "scaling_out": [
        "published at position 1",
        "viewer got [1, 2, 3, 4, 5, 6]",
    ],
    "half_close": [
        "send after close_send: StreamClosedError",
        "received: 1",
        "response after the block: 3",
        "read to the end: ['api 1', 'api 2', 'api 3'] OK",
        "never read: OK",
        "after break: CANCELLED",
    ],
    "patterns": [
        "api healthy: True",
        "missing healthy: False",
        "tail: [98, 99, 100, 101, 102, 103]",
        "uploaded: 1000",
        "followed: ['api 1', 'api 2', 'api 3', 'db 4', 'db 5', 'db 6']",
    ],
}


async def scaling_out_with_redis() -> None:
    async with redis_server() as redis:
        await scaling_out.main(redis.url)


SELF_CONTAINED: dict[str, Callable[[], Awaitable[None]]] = {
    "broadcast": broadcast.main,
    "coalescing": coalescing.main,
    "observability": observability.main,
    "retry": retry.main,
    "scaling_out": scaling_out_with_redis,
    "security": security.main,
    "server": server.main,
    "shutdown": shutdown.main,
}
"""Snippets that start their own StreamServer (through grpcstream.testing or directly)."""

NOT_RUN = {"__init__", "log_server"}
"""Snippet files that are not client programs (the server is exercised by every test)."""


MAINS: dict[str, Callable[[str], Awaitable[None]]] = {
    "backpressure": backpressure.main,
    "cancellation": cancellation.main,
    "client": client.main,
    "errors": errors.main,
    "half_close": half_close.main,
    "patterns": patterns.main,
    "pitfalls": pitfalls.main,
    "quickstart": quickstart.main,
}
"""Imported statically so that mypy --strict checks every snippet through this module."""


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_snippet_runs_against_a_real_server(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # pitfalls pushes 10 000 messages through raw grpc.aio and through grpcstream, twice:
    # seconds on an idle machine, many more on a loaded one. A hung snippet still fails.
    async with asyncio.timeout(3 * WAIT):
        if name in SELF_CONTAINED:
            await SELF_CONTAINED[name]()
        else:
            async with log_server.running() as target:
                await MAINS[name](target)
    lines = capsys.readouterr().out.splitlines()
    position = 0
    for expected in EXPECTED[name]:
        found = [i for i, line in enumerate(lines) if i >= position and line.startswith(expected)]
        assert found, f"{name}: {expected!r} not printed (in order) in {lines}"
        position = found[0] + 1


def test_every_snippet_file_is_run() -> None:
    files = {path.stem for path in SNIPPETS.glob("*.py")} - NOT_RUN
    assert files == set(EXPECTED) == set(MAINS) | set(SELF_CONTAINED)


OPTIONAL_INCLUDES = {"benchmarks/results/latest.md"}
"""Included when present (written by ``make bench``); mkdocs runs with check_paths false."""


def test_every_included_snippet_exists_and_sections_match() -> None:
    include = re.compile(r'--8<-- "([^"]+?)(?::([\w-]+))?"')
    for page in DOCS.rglob("*.md"):
        for path, section in include.findall(page.read_text()):
            source = REPO_ROOT / path
            if path in OPTIONAL_INCLUDES:
                continue
            assert source.is_file(), f"{page.name} includes missing {path}"
            if section:
                text = source.read_text()
                assert f"[start:{section}]" in text, f"{page.name}: no section {section} in {path}"
                assert f"[end:{section}]" in text, f"{page.name}: section {section} not closed"


def test_every_python_block_is_an_included_snippet() -> None:
    """Python shown in the docs comes from a tested file, so it cannot drift."""
    block = re.compile(r"```python\n(.*?)```", re.DOTALL)
    for page in DOCS.rglob("*.md"):
        for body in block.findall(page.read_text()):
            assert body.strip().startswith('--8<-- "'), f"{page.name}: inline Python {body!r}"


# --8<-- [start:fixture]
async def test_status_with_the_fixture(grpcstream_serve: ServeFactory) -> None:
    running = await grpcstream_serve(server.LogService())
    logs = running.client(logs_pb2_grpc.LogServiceStub, timeout=5.0)
    status = await logs.unary(logs.stub.GetStatus, StatusRequest(service="api"))
    assert status.healthy


# --8<-- [end:fixture]


SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|ref):`")


def test_no_sphinx_role_in_the_library_docstrings() -> None:
    """mkdocstrings renders Markdown: a ``:class:`X``` role would show up raw in the API pages.

    Link with autorefs (``[`X`][grpcstream.X]``) or write plain ``X`` instead;
    ``make docs-check`` also scans the rendered site.
    """
    leaks = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in sorted((REPO_ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SPHINX_ROLE.search(line)
    ]
    assert not leaks, "\n".join(leaks)
