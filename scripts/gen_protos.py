"""Regenerate the Python code for every .proto under protos/ (run via ``make protos``).

Writes ``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py`` and ``*_pb2_grpc.pyi`` next to
the sources. With ``--out DIR`` the files go to DIR instead, which the freshness
test uses to compare a regeneration against what is committed.

The grpc plugin stamps each ``*_pb2_grpc.py`` with the grpcio-tools version and refuses
to import under an older grpcio. The code it writes needs nothing newer than the grpcio
floor declared in pyproject.toml, so the stamp is rewritten to that floor: the generated
code then runs on every grpcio the project says it supports.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


_STAMP = re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.MULTILINE)


def grpcio_floor() -> str:
    """The lower bound of ``grpcio`` in pyproject.toml, as ``X.Y.Z``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"grpcio>=([0-9.]+)(,.*)?", requirement)
        if match:
            parts = [*match.group(1).split("."), "0", "0"][:3]
            return ".".join(parts)
    raise SystemExit("pyproject.toml declares no grpcio>= lower bound")


def generate(out: Path, proto_root: Path = PROTO_ROOT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    well_known = str(files("grpc_tools") / "_proto")
    bindir = Path(sys.executable).parent
    plugins = [
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
    ]
    sources = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    for source in sources:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            *plugins,
            f"--python_out={out}",
            f"--mypy_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            source,
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {source}")
    floor = grpcio_floor()
    for stub in out.rglob("*_pb2_grpc.py"):
        text = stub.read_text()
        stub.write_text(_STAMP.sub(f"GRPC_GENERATED_VERSION = '{floor}'", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    parser.add_argument("--proto-root", type=Path, default=PROTO_ROOT)
    args = parser.parse_args()
    generate(args.out, args.proto_root)


if __name__ == "__main__":
    main()
