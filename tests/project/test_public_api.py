"""The front door: ``grpcstream.__all__`` is sorted, complete, and every name is documented."""

from __future__ import annotations

import inspect
import pkgutil

import grpcstream


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
    public = [
        m.name for m in pkgutil.iter_modules(grpcstream.__path__) if not m.name.startswith("_")
    ]
    assert public in ([], ["testing"])


def test_py_typed_is_shipped() -> None:
    assert inspect.getfile(grpcstream).endswith("__init__.py")
    from importlib.resources import files

    assert files("grpcstream").joinpath("py.typed").is_file()
