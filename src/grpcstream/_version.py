"""The one place the package version is written (hatch reads it at build time)."""

__version__ = "0.2.0"
