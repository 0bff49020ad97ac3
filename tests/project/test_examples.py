"""Every example under examples/ run end to end as real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc.aio
import pytest

import grpcstream
from examples.logs.batches import LOG_BATCHES
from grpcstream_demo import logs_pb2_grpc
from grpcstream_demo.logs_pb2 import ERROR, FollowRequest, LogEntry, LogRequest
from tests.support.child_processes import example_server, run_module


async def test_unary_client_and_server() -> None:
    async with example_server("examples.unary.server") as (target, _):
        code, output = await run_module(
            "examples.unary.client", f"--target={target}", "--service=api"
        )
        assert (code, output) == (0, "api: healthy\n")
        code, output = await run_module("examples.unary.client", f"--target={target}", "--service=")
        assert code == 1
        assert "INVALID_ARGUMENT" in output


@pytest.mark.slow  # over 5 s (pytest --durations)
async def test_logs_demo_three_viewers_on_one_broadcast() -> None:
    code, output = await run_module("examples.logs.demo", "--seconds=6", "--last=10")
    assert code == 0, output
    counts = {
        name: tuple(map(int, found))
        for name, *found in re.findall(
            r"(late|slow|reconnecting) viewer: +received (\d+) entries, (\d+) gaps?,"
            r" (\d+) duplicates, (\d+) reconnects?",
            output,
        )
    }
    assert set(counts) == {"late", "slow", "reconnecting"}, output
    received, gaps, duplicates, reconnects = counts["late"]
    assert received >= 10
    assert (gaps, duplicates) == (0, 0)
    received, gaps, duplicates, reconnects = counts["reconnecting"]
    assert (gaps, duplicates) == (0, 0)
    assert reconnects >= 1
    received, gaps, duplicates, reconnects = counts["slow"]
    assert duplicates == 0
    assert gaps >= 1
    dropped = re.search(r"dropped (\d+) entries \(drop_oldest", output)
    assert dropped, output
    assert int(dropped.group(1)) > 0
    assert "server exit code: 0" in output
    # The late viewer's first screen: the last 10 lines, consecutive.
    screen = output.split("the last 10 lines:\n", 1)[1].splitlines()[:10]
    seqs = [int(line.split()[0]) for line in screen]
    assert seqs == list(range(seqs[0], seqs[0] + 10))


async def test_logs_demo_firehose_reports_both_methods() -> None:
    code, output = await run_module("examples.logs.demo", "--firehose", "--seconds=0.5")
    assert code == 0, output
    rates = re.findall(r"\((Stream\w+)\): ([\d,]+) entries/s", output)
    assert [method for method, _ in rates] == ["StreamLogs", "StreamLogBatches"], output
    assert all(int(rate.replace(",", "")) > 0 for _, rate in rates)


async def test_logs_server_serves_batches_to_a_plain_client_and_entries_to_grpcstream() -> None:
    async with example_server("examples.logs.server", "--rate=200") as (target, _):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = logs_pb2_grpc.LogBatchServiceStub(channel)
            batches = [
                b
                async for b in stub.StreamLogBatches(LogRequest(limit=50, follow=True), timeout=20)
            ]
        assert [e.seq for b in batches for e in b.entries] == list(range(1, 51))
        async with grpcstream.connect(target) as channel:
            client = grpcstream.StreamClient(
                channel, logs_pb2_grpc.LogBatchServiceStub, timeout=20.0
            )
            async with client.client_stream(
                client.stub.UploadLogBatches, batching=LOG_BATCHES
            ) as upload:
                for seq in range(1, 101):
                    await upload.send(LogEntry(seq=seq))
                summary = await upload.close_and_receive()
        assert (summary.received, summary.first_seq, summary.last_seq) == (100, 1, 100)


async def test_logs_server_tails_a_file_and_resumes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("boot\nERROR disk full\nready\n")
    async with example_server("examples.logs.server", f"--file={log}") as (target, _):
        async with grpcstream.connect(target) as channel:
            client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=20.0)
            request = LogRequest(after_seq=1)
            async with client.server_stream(client.stub.StreamLogs, request) as entries:
                assert [(e.seq, e.message) async for e in entries] == [
                    (2, "ERROR disk full"),
                    (3, "ready"),
                ]
            request = LogRequest(after_seq=3, follow=True, min_level=ERROR, limit=1)
            async with client.server_stream(client.stub.StreamLogs, request) as entries:
                with log.open("a") as file:
                    file.write("still fine\nERROR disk still full\n")
                assert [(e.seq, e.service) async for e in entries] == [(5, "app")]


async def test_logs_server_follow_changes_filter_and_upload() -> None:
    async with example_server("examples.logs.server", "--rate=200") as (target, _):
        async with grpcstream.connect(target) as channel:
            client = grpcstream.StreamClient(channel, logs_pb2_grpc.LogServiceStub, timeout=20.0)
            async with client.bidi_stream(client.stub.Follow) as follow:
                await follow.send(FollowRequest(service="api"))
                services = [(await follow.receive()).service for _ in range(3)]
                await follow.send(FollowRequest(min_level=ERROR))
                # Entries already queued under the old filter may still arrive; then only ERROR.
                async for entry in follow:
                    if entry.level == ERROR and entry.service != "api":
                        break
                await follow.close_send()
            assert services == ["api"] * 3
            async with client.client_stream(client.stub.UploadLogs) as upload:
                for seq in range(1, 11):
                    await upload.send(LogEntry(seq=seq, message=f"line {seq}"))
                summary = await upload.close_and_receive()
            assert (summary.received, summary.first_seq, summary.last_seq) == (10, 1, 10)


async def test_upload_checks_the_checksum(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 1000)
    saved = tmp_path / "saved"
    saved.mkdir()
    async with example_server("examples.upload.server", f"--save-dir={saved}") as (target, _):
        code, output = await run_module(
            "examples.upload.client", str(data), f"--target={target}", "--chunk-size=10000"
        )
    assert code == 0, output
    assert "sent 100% (256000 of 256000 bytes)" in output
    assert "data.bin: 256000 bytes in 26 chunks, checksum ok" in output
    assert (saved / "data.bin").read_bytes() == data.read_bytes()


async def test_chat_two_clients_talk_and_leave() -> None:
    async with example_server("examples.chat.server") as (target, _):
        common = (f"--target={target}", "--room=test", "--timeout=30")
        (alice_code, alice), (bob_code, bob) = await asyncio.gather(
            run_module(
                "examples.chat.client", *common, "--name=alice", "--say=hi bob", "--until-from=bob"
            ),
            run_module(
                "examples.chat.client",
                *common,
                "--name=bob",
                "--say=hi alice",
                "--say=bye",
                "--until-from=alice",
            ),
        )
    assert (alice_code, bob_code) == (0, 0), alice + bob
    said_to_alice, said_to_bob = (
        [line.split("] ", 1)[1] for line in output.splitlines() if ": " in line]
        for output in (alice, bob)
    )
    assert {"alice: hi bob", "bob: hi alice"} <= set(said_to_alice)
    # Alice may leave before "bye" reaches her; Bob hears his own lines, in order.
    assert said_to_bob.index("bob: hi alice") < said_to_bob.index("bob: bye")
    assert "alice: hi bob" in said_to_bob


async def test_interop_client_and_server() -> None:
    async with example_server("examples.interop.server") as (target, _):
        code, output = await run_module("examples.interop.client", target)
    assert code == 0, output
    assert output.count(": PASS") == 14, output
