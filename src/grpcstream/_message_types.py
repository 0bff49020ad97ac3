"""Which message class a method sends, and the cheap checks made before anything is sent.

grpc serializes whatever it is given with the method's serializer, so a dict, a str or
another message class goes out as an empty or garbled message (or fails deep inside
grpc). The classes come from the protobuf descriptors, once per method; each send then
costs one ``type(message) is cls`` comparison.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any, NoReturn

import grpc.aio

__all__ = [
    "KINDS",
    "check_kind",
    "import_descriptors_of",
    "request_type",
    "servicer_message_type",
    "wrong_type",
]

# (the multicallable class, what it is called, the StreamClient helper that takes it)
KINDS: tuple[tuple[type, str, str], ...] = (
    (grpc.aio.UnaryUnaryMultiCallable, "unary-unary", "unary"),
    (grpc.aio.UnaryStreamMultiCallable, "server-streaming", "server_stream"),
    (grpc.aio.StreamUnaryMultiCallable, "client-streaming", "client_stream"),
    (grpc.aio.StreamStreamMultiCallable, "bidirectional", "bidi_stream"),
)
_KIND_OF_HELPER = {helper: (cls, kind) for cls, kind, helper in KINDS}
_KIND_OF_HELPER["unary_call"] = _KIND_OF_HELPER["unary"]


# The multicallable classes are ABCs, whose isinstance() costs far more than a dict lookup.
_KIND_OF_TYPE: dict[type, str | None] = {}


def _kind_of(method: object) -> str | None:
    cls = type(method)
    try:
        return _KIND_OF_TYPE[cls]
    except KeyError:
        found = next((kind for base, kind, _ in KINDS if isinstance(method, base)), None)
        _KIND_OF_TYPE[cls] = found
        return found


def check_kind(method: object, helper: str, name: str) -> None:
    """Raise ``UsageError`` unless ``method`` is the kind of method ``helper`` calls.

    Runs before anything is started, so a wrong helper never opens an RPC.
    """
    expected_kind = _KIND_OF_HELPER[helper][1]
    if _kind_of(method) == expected_kind:
        return
    from ._exceptions import UsageError

    for cls, kind, right in KINDS:
        if isinstance(method, cls):
            raise UsageError(
                f"client.{helper}() calls {expected_kind} methods, but {name} is {kind}: "
                f"use client.{right}(); no RPC was started"
            )
    raise UsageError(
        f"client.{helper}() needs a method of the client's stub (client.stub.Name), "
        f"got {type(method).__name__}; no RPC was started"
    )


def import_descriptors_of(stub_factory: object) -> None:
    """Import the ``*_pb2`` module beside a generated stub, so its services are known.

    ``*_pb2_grpc`` modules import the message modules but not the one that declares the
    service, and the method's request class is only found through the service.
    """
    module = getattr(stub_factory, "__module__", "") or ""
    if module.endswith("_pb2_grpc"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module.removesuffix("_grpc"))


def _message_class(descriptor: Any) -> type | None:
    try:
        from google.protobuf import message_factory
    except ImportError:  # pragma: no cover - protobuf comes with every generated stub
        return None
    cls: type = message_factory.GetMessageClass(descriptor)
    return cls


def request_type(method_path: str) -> type | None:
    """The request class of ``/package.Service/Method``, or None if it is not known."""
    try:
        from google.protobuf import descriptor_pool
    except ImportError:  # pragma: no cover
        return None
    name = method_path.lstrip("/").replace("/", ".")
    try:
        method = descriptor_pool.Default().FindMethodByName(name)
    except KeyError:
        return None  # a method without a registered descriptor: nothing to check against
    return _message_class(method.input_type)


def servicer_message_type(servicer: object, method_name: str, *, output: bool) -> type | None:
    """The response (``output=True``) or request class of a servicer's method, if known."""
    for cls in type(servicer).__mro__:
        if not cls.__module__.endswith("_pb2_grpc"):
            continue
        pb2 = sys.modules.get(cls.__module__.removesuffix("_grpc"))
        if pb2 is None:
            with contextlib.suppress(ImportError):
                pb2 = importlib.import_module(cls.__module__.removesuffix("_grpc"))
        service = getattr(pb2, "DESCRIPTOR", None)
        found = (
            None
            if service is None
            else service.services_by_name.get(cls.__name__.removesuffix("Servicer"))
        )
        method = None if found is None else found.methods_by_name.get(method_name)
        if method is not None:
            return _message_class(method.output_type if output else method.input_type)
    return None


def wrong_type(message: object, expected: type, what: str) -> NoReturn:
    """Raise the TypeError for ``message`` that is not an ``expected``."""
    raise TypeError(
        f"{what} takes {expected.__name__} messages, got {type(message).__name__}: nothing was sent"
    )
