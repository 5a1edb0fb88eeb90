"""The zoo's own exceptions: each message names the problem and the fix.

The ``zoo`` command prints them without a traceback and exits with their ``exit_code``: 2 for input that
cannot work (a recipe, a data file, a checkpoint), which is reported before training starts wherever it
can be detected there; 1 for a fault found while training.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base of the zoo's errors; ``exit_code`` is what the ``zoo`` command exits with."""

    exit_code = 2


class ZooConfigError(ZooError, ValueError):
    """A recipe or command line that cannot work; the message says what to change."""


class DataValidationError(ZooError, ValueError):
    """Data that cannot be trained on; the message names the split, the row and the column."""


class CheckpointError(ZooError, ValueError):
    """A checkpoint or model file that cannot be loaded (empty, truncated, foreign, mismatched)."""


class NonFiniteLossError(ZooError, RuntimeError):
    """Training produced a non-finite loss; the message names the step and the batch."""

    exit_code = 1
