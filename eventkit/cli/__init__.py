"""The ``eventkit`` command: a thin shell over the library (parse, call, print)."""

from __future__ import annotations

from eventkit.cli.main import app, main

__all__ = ["app", "main"]
