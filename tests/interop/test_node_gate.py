"""Without Node, a local run skips the grpc-js directions with a message; CI fails them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.servers import REPO_ROOT


@pytest.mark.parametrize(
    ("ci", "outcome", "message"),
    [
        ("", "2 skipped", "Node.js (`node`) is not installed; skipping the grpc-js"),
        ("true", "2 failed", "CI must run the grpc-js interop matrix"),
    ],
)
def test_a_machine_without_node(ci: str, outcome: str, message: str) -> None:
    environment = {**os.environ, "PATH": "/nonexistent", "CI": ci}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/interop/test_interop.py",
            "-k",
            "grpc-js and empty_unary",
        ],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert outcome in result.stdout, result.stdout
    assert message in result.stdout, result.stdout
