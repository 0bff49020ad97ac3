"""Test what users install: ``make wheel-check`` (part of ``make test``).

1. Build the sdist and the wheel (``python -m build``, without isolation: the build
   backend is locked in requirements/dev.txt) and run ``twine check --strict`` on both.
2. A fresh venv with only ``grpcstream[health]`` from the wheel, its dependencies resolved
   by pip from PyPI as a user's would be, and no dev tools: tests/wheel_smoke/installed.py
   proves the import comes from site-packages, ``py.typed`` is installed, the pytest
   plugin entry point loads, and a server and client round trip works.
3. The quickstart's pip-only path, run from docs/quickstart.md itself: every command block
   marked ``<!-- wheel-check: NAME -->`` is run as written in a new directory, with one
   substitution (``grpcstream[typing]`` becomes the wheel, and the tools are constrained
   to the locked versions so that a new mypy release cannot break CI). The quickstart's
   server and client run against each other and the client must print exactly what the
   page says; then its ``mypy --strict`` and ``pytest`` commands run on the copied files.

Everything happens in a temporary directory outside the repository (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART_PAGE = ROOT / "docs" / "quickstart.md"
QUICKSTART_FILES = ROOT / "docs" / "snippets" / "echo"
LOCK = ROOT / "requirements" / "dev.txt"
STEP_TIMEOUT = 600.0  # pip on a cold cache, on a loaded 2-core machine
SERVER_START_TIMEOUT = 60.0

_MARKED_BLOCK = re.compile(
    r"<!-- wheel-check: (?P<name>[\w-]+) -->\s*\n```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.DOTALL
)
_REQUIREMENT = '"grpcstream[typing]"'


def log(message: str) -> None:
    print(f"wheel-check: {message}", flush=True)


def clean_env(venv: Path | None = None) -> dict[str, str]:
    """The environment of a new shell, with ``venv`` activated if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(command: list[str] | str, *, cwd: Path, env: dict[str, str] | None = None) -> str:
    shown = command if isinstance(command, str) else " ".join(command)
    log(f"$ {shown}")
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        shell=isinstance(command, str),
        executable="/bin/bash" if isinstance(command, str) else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"wheel-check: FAILED ({done.returncode}): {shown}\n{done.stdout}")
    return done.stdout


def marked_blocks(page: Path) -> dict[str, tuple[str, str]]:
    """``{name: (language, body)}`` for every block marked ``<!-- wheel-check: name -->``."""
    blocks = {m["name"]: (m["lang"], m["body"]) for m in _MARKED_BLOCK.finditer(page.read_text())}
    for name in ("install", "protoc", "output", "mypy", "pytest"):
        if name not in blocks:
            sys.exit(f"wheel-check: {page} has no block marked <!-- wheel-check: {name} -->")
    return blocks


def build(dist: Path) -> tuple[Path, Path]:
    run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        cwd=ROOT,
    )
    (sdist,) = dist.glob("grpcstream-*.tar.gz")
    (wheel,) = dist.glob("grpcstream-*.whl")
    run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)], cwd=ROOT)
    names = zipfile.ZipFile(wheel).namelist()
    assert "grpcstream/py.typed" in names, "py.typed is not in the wheel"
    assert not [n for n in names if n.startswith(("tests/", "protos/", "grpcstream_demo/"))], names
    log(f"built {sdist.name} and {wheel.name}; twine check passed")
    return sdist, wheel


def check_user_install(wheel: Path, work: Path) -> None:
    venv = work / "user-venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    env = clean_env(venv)
    run(["pip", "install", "--quiet", f"grpcstream[health] @ {wheel.as_uri()}"], cwd=work, env=env)
    smoke = ROOT / "tests" / "wheel_smoke" / "installed.py"
    print(run(["python", "-I", str(smoke), str(ROOT)], cwd=work, env=env), end="")


def check_quickstart(wheel: Path, work: Path) -> None:
    blocks = marked_blocks(QUICKSTART_PAGE)
    project = work / "quickstart"
    project.mkdir()
    for name in ("echo.proto", "echo_server.py", "echo_client.py", "test_echo.py", "pytest.ini"):
        shutil.copy(QUICKSTART_FILES / name, project / name)
    install = blocks["install"][1]
    if _REQUIREMENT not in install:
        sys.exit(f"wheel-check: the install block no longer says {_REQUIREMENT}:\n{install}")
    install = install.replace(_REQUIREMENT, f'"grpcstream[typing] @ {wheel.as_uri()}" -c {LOCK}')
    run(install, cwd=project, env=clean_env())
    venv = project / ".venv"  # the install block made and activated it
    env = clean_env(venv)
    run(blocks["protoc"][1], cwd=project, env=env)
    printed = run_server_and_client(project, env)
    expected = blocks["output"][1]
    if printed.strip() != expected.strip():
        sys.exit(f"wheel-check: the client printed\n{printed}\nbut the page says\n{expected}")
    log("the quickstart client printed what the page says")
    run(blocks["mypy"][1], cwd=project, env=env)
    for extra in ("", " -o asyncio_mode=auto"):  # the default (strict) mode, then auto
        run(f"{blocks['pytest'][1]} -W error -p no:cacheprovider{extra}", cwd=project, env=env)


def run_server_and_client(project: Path, env: dict[str, str]) -> str:
    """Start echo_server.py on an ephemeral port, run echo_client.py, SIGTERM the server."""
    log("$ python echo_server.py 127.0.0.1:0 & python echo_client.py <its address>")
    server = subprocess.Popen(
        ["python", "echo_server.py", "127.0.0.1:0"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], SERVER_START_TIMEOUT)
        line = server.stdout.readline() if ready else ""  # its first line: the address
        match = re.fullmatch(r"serving on (\S+)\n", line)
        if match is None:
            sys.exit(f"wheel-check: echo_server.py did not start: {line!r}")
        client = subprocess.run(
            ["python", "echo_client.py", match[1]],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        if client.returncode != 0:
            sys.exit(f"wheel-check: echo_client.py failed:\n{client.stdout}{client.stderr}")
        server.send_signal(signal.SIGTERM)  # the documented way to stop it: a graceful drain
        if server.wait(timeout=60) != 0:
            sys.exit(f"wheel-check: echo_server.py exited with {server.returncode} on SIGTERM")
        return client.stdout
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="grpcstream-wheel-check-"))
    try:
        _, wheel = build(work / "dist")
        check_user_install(wheel, work)
        check_quickstart(wheel, work)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"all checks passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
