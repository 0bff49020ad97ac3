"""The committed generated code matches what ``make protos`` produces with the locked tools."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.servers import REPO_ROOT

PROTO_ROOT = REPO_ROOT / "protos"


def _generate(out: Path, proto_root: Path = PROTO_ROOT) -> None:
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "gen_protos.py"),
            "--out",
            str(out),
            "--proto-root",
            str(proto_root),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _drift(generated_root: Path, committed_root: Path) -> list[str]:
    """Generated files that are missing, extra or different from the committed ones."""
    generated = {p.relative_to(generated_root) for p in generated_root.rglob("*_pb2*.py*")}
    committed = {p.relative_to(committed_root) for p in committed_root.rglob("*_pb2*.py*")}
    differing = {
        rel
        for rel in generated & committed
        if not filecmp.cmp(generated_root / rel, committed_root / rel, shallow=False)
    }
    return sorted(str(rel) for rel in (generated ^ committed) | differing)


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    _generate(tmp_path)
    assert list(tmp_path.rglob("*_pb2.py")), "protoc produced nothing"
    assert _drift(tmp_path, PROTO_ROOT) == [], "regenerate with `make protos`"


def test_a_real_proto_change_is_drift(tmp_path: Path) -> None:
    changed_root = tmp_path / "protos"
    shutil.copytree(PROTO_ROOT, changed_root, ignore=shutil.ignore_patterns("*_pb2*"))
    proto = changed_root / "grpcstream_demo" / "logs.proto"
    source = proto.read_text()
    assert "message StatusRequest {" in source
    proto.write_text(
        source.replace(
            "message StatusRequest {", "message StatusRequest {\n  bool verbose = 99;", 1
        )
    )
    out = tmp_path / "out"
    _generate(out, changed_root)
    assert _drift(out, PROTO_ROOT) == [
        "grpcstream_demo/logs_pb2.py",
        "grpcstream_demo/logs_pb2.pyi",
    ]


def _version(text: str) -> tuple[int, ...]:
    parts = [int(part) for part in text.split(".")]
    return tuple([*parts, 0, 0][:3])


def test_generated_stamp_is_within_the_declared_grpcio_floor() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dependencies = pyproject["project"]["dependencies"]
    floors = [re.fullmatch(r"grpcio>=([0-9.]+),<2", d) for d in dependencies]
    floor = next(m.group(1) for m in floors if m)
    stamps = {
        str(path.relative_to(PROTO_ROOT)): re.search(
            r"^GRPC_GENERATED_VERSION = '([0-9.]+)'$", path.read_text(), re.MULTILINE
        )
        for path in PROTO_ROOT.rglob("*_pb2_grpc.py")
    }
    assert stamps
    for name, stamp in stamps.items():
        assert stamp is not None, f"{name} has no version stamp"
        assert _version(stamp.group(1)) <= _version(floor), f"{name} needs grpcio>={stamp.group(1)}"


def test_stubs_are_typed_for_grpc_aio() -> None:
    stub = (PROTO_ROOT / "grpcstream_demo" / "logs_pb2_grpc.pyi").read_text()
    assert "_aio.UnaryStreamMultiCallable[_logs_pb2.LogRequest, _logs_pb2.LogEntry]" in stub
