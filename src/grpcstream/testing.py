"""Helpers for testing services built on grpcstream (the only public submodule).

Also registered as a pytest plugin (entry point ``grpcstream``).
"""

from __future__ import annotations

__all__: list[str] = []
