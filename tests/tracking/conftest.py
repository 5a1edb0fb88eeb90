"""Fixtures for tests/tracking; helpers are in tracking_support.py, imported by that unique name."""

from tracking_support import fresh_cwd, mlflow_server

__all__ = ["fresh_cwd", "mlflow_server"]
