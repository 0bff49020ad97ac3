"""The error hierarchy: one status name, picklable errors, importable not-retried classes."""

from __future__ import annotations

import pickle

import pytest

import grpcstream
from grpcstream import RetryNotPossibleError, RpcError, StatusCode
from grpcstream._exceptions import retry_not_possible

STATUS_CLASSES = sorted(
    (
        cls
        for cls in vars(grpcstream).values()
        if isinstance(cls, type) and issubclass(cls, RpcError)
    ),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", STATUS_CLASSES, ids=lambda cls: cls.__name__)
def test_every_status_class_names_its_status_code_once(cls: type[RpcError]) -> None:
    error = cls("details")
    assert error.code is cls.code
    assert not hasattr(cls, "status_code")
    if cls is not RpcError and cls is not grpcstream.IdleTimeout:
        assert getattr(StatusCode, cls.code.name) is cls.code
        assert grpcstream.status_error(cls.code).__class__ is cls


def test_status_is_a_deprecated_alias_of_code() -> None:
    error = grpcstream.NotFound("no such log")
    with pytest.deprecated_call(match=r"RpcError\.code"):
        assert error.status is StatusCode.NOT_FOUND


@pytest.mark.parametrize("cls", STATUS_CLASSES, ids=lambda cls: cls.__name__)
def test_every_status_error_survives_pickling(cls: type[RpcError]) -> None:
    error = cls("it broke", trailing_metadata=(("retry-hint", "no"), ("blob-bin", b"\x00")))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (copy.code, copy.details, copy.trailing_metadata) == (
        error.code,
        error.details,
        error.trailing_metadata,
    )
    assert str(copy) == str(error)


def test_a_not_retried_error_is_importable_picklable_and_still_its_status() -> None:
    from grpcstream._exceptions import UnavailableNotRetried  # type: ignore[attr-defined]

    failure = grpcstream.Unavailable("server gone", trailing_metadata=(("k", "v"),))
    error = retry_not_possible(failure, "the replay buffer overflowed")
    assert type(error) is UnavailableNotRetried
    assert isinstance(error, grpcstream.Unavailable)
    assert isinstance(error, RetryNotPossibleError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UnavailableNotRetried
    assert copy.details == "server gone (not retried: the replay buffer overflowed)"
    assert copy.trailing_metadata == (("k", "v"),)
    assert copy.code is StatusCode.UNAVAILABLE


def test_a_not_retried_idle_timeout_is_still_an_idle_timeout() -> None:
    idle = grpcstream.IdleTimeout("quiet", code=StatusCode.UNAVAILABLE)
    error = retry_not_possible(idle, "too much sent")
    assert isinstance(error, grpcstream.IdleTimeout)
    assert isinstance(error, RetryNotPossibleError)
    assert type(pickle.loads(pickle.dumps(error))) is type(error)
