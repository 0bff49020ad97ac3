"""The committed generated code matches what ``make protos`` would produce."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert generated, "protoc produced nothing"
    committed_root = ROOT / "protos"
    committed = sorted(p.relative_to(committed_root) for p in committed_root.rglob("*_pb2*.py*"))
    assert generated == committed, "a generated file is missing or extra: run `make protos`"
    stale = [
        str(rel)
        for rel in generated
        if not filecmp.cmp(tmp_path / rel, committed_root / rel, shallow=False)
    ]
    assert stale == [], f"regenerate with `make protos`: {stale}"


def test_stubs_are_typed_for_grpc_aio() -> None:
    stub = (ROOT / "protos" / "grpcstream_demo" / "logs_pb2_grpc.pyi").read_text()
    assert "_aio.UnaryStreamMultiCallable[_logs_pb2.LogRequest, _logs_pb2.LogEntry]" in stub
