"""Runnable grpcstream examples; run each with ``python -m examples.<name>.<program>``."""
