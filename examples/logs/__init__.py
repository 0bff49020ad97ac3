"""The live log dashboard: a log server, a terminal dashboard and ``make demo``."""
