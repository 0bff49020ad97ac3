"""Fixtures shared by every test package; importable helpers live in ``tests.support``."""
