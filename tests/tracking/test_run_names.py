"""Runs of one recipe are told apart in MLflow: name ``{recipe}-{cell}-{time}``, the cell and recipe as
tags, ``best_<metric>`` beside the last value, and no private LightningCLI entries among the params."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tracking_support import REPO, child_env

from zoo.tracking.provenance import default_run_name

TINY = (
    "--data.train_size", "64", "--data.val_size", "32", "--data.test_size", "32", "--trainer.max_epochs", "2",
    "--tracking.log_model", "false", "--tracking.registered_model_name", "null",
)  # fmt: skip


def fit(cell: str, cwd: Path) -> None:
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    command = [sys.executable, "-m", "zoo", "fit", "-c", recipe, *TINY, "--model.encoder.cell", cell]
    env = child_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_two_cells_of_one_recipe_are_two_named_runs_with_best_metrics(tmp_path: Path) -> None:
    import mlflow

    fit("gru", tmp_path)
    fit("lstm", tmp_path)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    by_cell = {run.data.tags["zoo.cell"]: run for run in runs}
    assert sorted(by_cell) == ["gru", "lstm"]
    for cell, run in by_cell.items():
        assert re.fullmatch(rf"quickstart-{cell}-\d{{8}}-\d{{6}}", run.info.run_name)
        assert run.data.tags["zoo.recipe"] == "quickstart"
        best = run.data.metrics["best_val_acc"]
        history = [m.value for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert len(history) == 2 and best == pytest.approx(max(history))
        assert [key for key in run.data.params if key.startswith("_")] == []
    assert by_cell["gru"].info.run_name != by_cell["lstm"].info.run_name


def test_default_run_name_uses_a_recipe_file_stem() -> None:
    from datetime import datetime

    when = datetime(2026, 1, 2, 3, 4, 5)
    assert default_run_name("lm/ptb-gru", "gru", when) == "lm/ptb-gru-gru-20260102-030405"
    assert default_run_name("my/recipe.yaml", "mgu", when) == "recipe-mgu-20260102-030405"
    assert default_run_name(None, None, when) == "20260102-030405"
