"""DDP: rank 0 creates the store and owns the run; two processes make one MLflow run and one version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tracking_support import HERE, child_env

pytestmark = pytest.mark.slow


def test_a_ddp_fit_is_one_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "ddp_fit.py"), str(tmp_path)],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("ddp")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert runs[0].data.params["cell"] == "gru" and "val_loss" in runs[0].data.metrics
    assert [str(v.version) for v in client.search_model_versions("name='toy-ddp'")] == ["1"]
    assert done.stdout.count("Registered toy-ddp version 1") == 1
