"""Fixtures for tests/cli; helpers are in cli_support.py, imported by that unique name."""

from cli_support import zoo_main

__all__ = ["zoo_main"]
