"""The front door: ``grpcstream.__all__`` is sorted, complete, and every name is documented."""

from __future__ import annotations

import inspect
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import grpcstream
from tests.support.servers import REPO_ROOT


def _public_names_defined_in_package() -> set[str]:
    names: set[str] = set()
    for name, value in vars(grpcstream).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        names.add(name)
    return names


def test_all_is_sorted() -> None:
    assert list(grpcstream.__all__) == sorted(grpcstream.__all__)


def test_all_lists_every_public_name() -> None:
    exported = set(grpcstream.__all__) - {"__version__"}
    defined = _public_names_defined_in_package() - {"annotations"}
    assert defined == exported


def test_all_has_no_duplicates_and_resolves() -> None:
    assert len(set(grpcstream.__all__)) == len(grpcstream.__all__)
    for name in grpcstream.__all__:
        assert hasattr(grpcstream, name), name


def test_every_public_class_and_function_has_a_docstring() -> None:
    missing = [
        name
        for name in grpcstream.__all__
        if (inspect.isclass(getattr(grpcstream, name)) or callable(getattr(grpcstream, name)))
        and not inspect.getdoc(getattr(grpcstream, name))
    ]
    assert missing == []


def test_only_testing_is_a_public_submodule() -> None:
    modules = [module.name for module in pkgutil.iter_modules(grpcstream.__path__)]
    assert [name for name in modules if not name.startswith("_")] == ["testing"]
    assert len(modules) > 1  # the private modules are found too: the listing is not empty


@pytest.mark.slow
def test_py_typed_is_shipped(tmp_path: Path) -> None:
    """The built wheel carries ``py.typed`` (``make wheel-check`` also installs it and checks
    the installed copy: scripts/wheel_check.py and tests/wheel_smoke/installed.py)."""
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (wheel,) = tmp_path.glob("grpcstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "grpcstream/py.typed" in names
    assert "grpcstream/testing.py" in names
