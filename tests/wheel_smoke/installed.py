"""What a user gets from the built wheel; run by ``make wheel-check`` (scripts/wheel_check.py).

It runs inside a fresh venv that holds only ``grpcstream[health]`` from the wheel and what
pip resolved for it from PyPI: no pytest, no dev tools, no editable install. It is started
with ``python -I`` (the repository and this file's directory are not on ``sys.path``)
from a directory outside the repository, and given the repository's path to prove that
nothing is imported from there.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.resources
import importlib.util
import sys
import sysconfig
from pathlib import Path

DEV_TOOLS = ("pytest", "pytest_asyncio", "mypy", "ruff", "grpc_tools", "mypy_protobuf")


def check_no_dev_tools() -> None:
    present = [name for name in DEV_TOOLS if importlib.util.find_spec(name) is not None]
    assert not present, f"the user venv has dev tools: {present}"


def check_imported_from_site_packages(repo: Path) -> None:
    import grpcstream

    location = Path(grpcstream.__file__).resolve()
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert location.is_relative_to(site_packages), f"{location} is not in {site_packages}"
    assert not location.is_relative_to(repo), f"{location} comes from the repository"
    assert grpcstream.__version__ == importlib.metadata.version("grpcstream")
    print(f"grpcstream {grpcstream.__version__} imported from {location.parent}")


def check_py_typed() -> None:
    marker = importlib.resources.files("grpcstream").joinpath("py.typed")
    assert marker.is_file(), "py.typed is missing from the installed package"
    recorded = {str(path) for path in importlib.metadata.files("grpcstream") or ()}
    assert "grpcstream/py.typed" in recorded, "py.typed is not in the wheel's RECORD"
    print("py.typed installed")


def check_pytest_plugin_entry_point() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="pytest11", name="grpcstream")
    assert entry_point.value == "grpcstream._pytest_plugin", entry_point.value
    plugin = entry_point.load()
    # Without pytest-asyncio the plugin loads and simply offers no fixture; the quickstart
    # venv (with pytest) runs a test that uses the fixture.
    assert not hasattr(plugin, "grpcstream_serve")
    print(f"pytest11 entry point loads {plugin.__name__}")


async def check_round_trip() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    import grpcstream
    from grpcstream.testing import serve

    serving = health_pb2.HealthCheckResponse.SERVING
    async with serve(health=True) as running:
        assert isinstance(running.server, grpcstream.StreamServer)
        client = running.client(health_pb2_grpc.HealthStub, timeout=30.0)
        reply = await client.unary(client.stub.Check, health_pb2.HealthCheckRequest())
        assert reply.status == serving, reply
        watch = client.server_stream(client.stub.Watch, health_pb2.HealthCheckRequest())
        async with watch as updates:
            first = await anext(updates)
            assert first.status == serving, first
    print(f"server and client round trip on {running.target}: unary and server stream")


def main() -> None:
    repo = Path(sys.argv[1]).resolve()
    assert str(repo) not in sys.path, sys.path
    assert "" not in sys.path, sys.path
    check_no_dev_tools()
    check_imported_from_site_packages(repo)
    check_py_typed()
    check_pytest_plugin_entry_point()
    asyncio.run(check_round_trip())


if __name__ == "__main__":
    main()
