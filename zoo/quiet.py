"""The one place where the zoo silences its dependencies' noise (``zoo --verbose`` shows everything).

A ``zoo`` command's default output is its progress bar, the model summary, the closing summary and the
lines that say where the model went (load/serve). Noise the project causes is fixed where it comes from
(the pyfunc models' type hints, the registry creating a model only when absent); what the dependencies
print that a user cannot act on is dropped here, by message, so that anything new still shows:

* warnings: :data:`NOISE_WARNINGS` (e.g. MLflow's "AnyType" note, Lightning's ``_pytree`` deprecation);
* log records: :data:`NOISE_LOGS` (Lightning's "Seed set", accelerator lines and LitLogger advert; MLflow's
  INFO lines about store migrations and signature inference, and "experiment not found, creating it");
* progress bars of the Hugging Face ``datasets`` maps and loads, and of MLflow's artifact downloads from
  a local store.

``zoo --verbose ...`` (or ``ZOO_VERBOSE=1``) applies none of it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Set by ``zoo --verbose`` (and inherited by DDP ranks and subprocesses): apply no filter.
VERBOSE_ENV = "ZOO_VERBOSE"

#: Warning messages (regular expressions, matched at the start) that are dropped.
NOISE_WARNINGS = (
    # MLflow, when a model whose predict returns dicts is logged or loaded: nothing to act on
    r".*Any type hint is inferred as AnyType",
    # MLflow, when a forecaster is logged: the output's integer `step` column is never missing
    r".*Hint: Inferred schema contains integer column",
    # Lightning 2.6 on torch >= 2.10: its own deprecated call, fixed upstream
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated",
)

#: Logger name -> message patterns (regular expressions, matched at the start) of records that are dropped.
NOISE_LOGS: dict[str, tuple[str, ...]] = {
    "lightning.fabric.utilities.seed": (r"Seed set to",),
    "lightning.pytorch.utilities.rank_zero": (
        r"GPU available: False",
        r"TPU available: False",
        r"💡 Tip: For seamless cloud logging",
    ),
    "lightning.pytorch.loggers.mlflow": (r"Experiment with name .* not found\. Creating it\.",),
    "mlflow.store.db.utils": (r"Creating initial MLflow database tables", r"Updating database tables"),
    "mlflow.models.signature": (r"Running the predict function to generate output",),
    "alembic.runtime.migration": (r".*",),
}


def verbose() -> bool:
    """Whether ``--verbose`` (or ``ZOO_VERBOSE=1``) asked for every line."""
    return os.environ.get(VERBOSE_ENV, "").lower() in {"1", "true", "yes"}


_NOISE_WARNING = re.compile("|".join(f"(?:{p})" for p in NOISE_WARNINGS))


def _drop_noise_warnings() -> None:
    """Filter :data:`NOISE_WARNINGS` out where warnings are shown.

    An ``ignore`` filter alone is not enough: MLflow calls some functions under ``catch_warnings`` with
    its own ``simplefilter("once")`` in front of every other filter.
    """
    for pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    show = warnings.showwarning
    if getattr(show, "_zoo_quiet", False):
        return

    def showwarning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not _NOISE_WARNING.match(str(message)):
            show(message, category, *args, **kwargs)

    showwarning._zoo_quiet = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


class _DropMatching(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def quiet_output(verbose_flag: bool = False) -> None:
    """Apply the filters above to this process, unless ``verbose_flag`` or ``ZOO_VERBOSE`` is set.

    Called once by the ``zoo`` command before anything is parsed or built. ``verbose_flag`` is recorded in
    ``ZOO_VERBOSE`` so that DDP ranks started from this process print everything too.
    """
    if verbose_flag:
        os.environ[VERBOSE_ENV] = "1"
    if verbose():
        return
    _drop_noise_warnings()
    for name, patterns in NOISE_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) for f in logger.filters):
            logger.addFilter(_DropMatching(patterns))
    # read by datasets when it is imported; a datasets already imported is told directly
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    # bars of copies from a local store, read at each download
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Inside the block, MLflow loads a model without download bars or notes (unless verbose).

    For ``zoo.load_model`` called from Python, where the ``zoo`` command's :func:`quiet_output` did not
    run; the filters are undone after the block.
    """
    if verbose():
        yield
        return
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ.setdefault(key, "false")
    try:
        with warnings.catch_warnings():
            _drop_noise_warnings()
            yield
    finally:
        if before is None:
            os.environ.pop(key, None)
