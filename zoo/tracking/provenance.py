"""Where a run came from: the command, the recipe, the code's commit and the machine, as MLflow tags.

``zoo fit/validate/test`` set these on their MLflow run (through ``MLflowSaveConfigCallback``), so that a
result exported from the store names what made it (``benchmarks/results.py``).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

TAG_RECIPE = "zoo.recipe"
TAG_COMMAND = "zoo.command.{stage}"
TAG_COMMIT = "zoo.git_commit"
TAG_MACHINE = "zoo.machine"
TAG_CELL = "zoo.cell"
#: Metric logged at the end of every ``fit`` (one value per fit, so a resumed run holds several).
FIT_SECONDS = "fit_seconds"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The ``zoo`` command that is running, quoted for a shell (``sys.argv`` after the program name)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["zoo", *args])


def recipe_name(argv: Sequence[str] | None = None) -> str | None:
    """The command's last ``-c``/``--config``: a bundled recipe's name (``lm/ptb-lstm``), else the path."""
    from zoo.cli import recipes_root

    args = list(sys.argv[1:] if argv is None else argv)
    found = None
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--config="):
            found = arg.split("=", 1)[1]
    if found is None:
        return None
    path = Path(found)
    try:
        return path.resolve().relative_to(recipes_root().resolve()).with_suffix("").as_posix()
    except (ValueError, OSError):
        return found


def git_commit(folder: Path | None = None) -> str | None:
    """The commit of the git checkout holding the zoo's code (``-dirty`` with uncommitted changes)."""
    where = str(folder or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # an installed wheel, or no git
    return f"{head}-dirty" if dirty else head or None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device | None = None) -> str:
    """One line: CPU model and cores (and the GPU when the run used one), torch version, OS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu_model()}, {cores} cores"
    if device is not None and device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return f"{text}; torch {torch.__version__}; {platform.system()}"


def run_tags(stage: str, device: torch.device | None = None) -> dict[str, str]:
    """The provenance tags of a run at ``stage`` (``fit``, ``test``, ...); empty values are left out."""
    tags = {
        TAG_COMMAND.format(stage=stage): command_line(),
        TAG_RECIPE: recipe_name(),
        TAG_COMMIT: git_commit(),
        TAG_MACHINE: machine_description(device),
    }
    return {k: v for k, v in tags.items() if v}


def default_run_name(recipe: str | None, cell: str | None, now: datetime | None = None) -> str:
    """``{recipe}-{cell}-{yyyymmdd-hhmmss}`` (parts that are unknown are left out).

    ``recipe`` is what :func:`recipe_name` returns; a file outside the bundled recipes gives its stem.
    MLflow's own random names repeat from run to run once ``seed_everything`` has seeded them.
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    if recipe and recipe.endswith((".yaml", ".yml")):
        recipe = Path(recipe).stem
    return "-".join(part for part in (recipe, cell, stamp) if part)


def name_configured_run(config: Any) -> str:
    """The name of a new fit's MLflow run, ``{recipe}-{cell}-{yyyymmdd-hhmmss}``; also set on a zoo MLflow
    logger configured without ``run_name`` (one that names its run keeps it). Returns the name."""
    model = config.get("model")
    encoder = model.get("init_args", {}).get("encoder") if model is not None else None
    cell = encoder.get("cell") if isinstance(encoder, dict) else getattr(encoder, "cell", None)
    name = default_run_name(recipe_name(), cell if isinstance(cell, str) else None)
    logger = config.trainer.get("logger")
    class_path = getattr(logger, "class_path", None) if logger is not None else None
    init_args = logger.get("init_args") if isinstance(class_path, str) else None
    ours = isinstance(class_path, str) and class_path.endswith("ZooMLFlowLogger")
    unnamed = init_args is not None and init_args.get("run_name") is None and init_args.get("run_id") is None
    if ours and unnamed and init_args is not None:
        init_args["run_name"] = name
    return name
