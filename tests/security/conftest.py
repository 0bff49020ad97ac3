"""Fixtures of the security tests."""

from __future__ import annotations

import pytest

from tests.security.pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki() -> Pki:
    """Certificates for every security test (making them takes a moment)."""
    return make_pki()
