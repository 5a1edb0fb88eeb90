"""Two `zoo fit` runs started together in an empty folder: one MLflow store, two checkpoint folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import zoo_env

TOY = (
    "--model", "_toy.ToyClassifier", "--data", "_toy.ToyTextData",
    "--model.encoder.cell", "gru", "--model.encoder.hidden_size", "4",
    "--data.num_examples", "64", "--data.batch_size", "16",
    "--trainer.max_epochs", "2",
    "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.default_root_dir", "runs",
)  # fmt: skip


@pytest.mark.slow
def test_two_first_fits_in_an_empty_folder_both_finish_with_their_metrics(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "zoo", "fit", *TOY, "--seed_everything", str(seed)],
            cwd=tmp_path,
            env=zoo_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err[-4000:]
        assert "readonly database" not in err

    folders = sorted((tmp_path / "runs" / "checkpoints").glob("version_*"))
    assert [f.name for f in folders] == ["version_0", "version_1"]
    run_ids = {json.loads((f / "mlflow_run.json").read_text())["run_id"] for f in folders}
    assert len(run_ids) == 2
    for folder in folders:
        assert (folder / "last.ckpt").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        # 64 examples in batches of 16 for 2 epochs: validation once per epoch
        val_steps = [m.step for m in client.get_metric_history(run_id, "val_acc")]
        assert val_steps == [3, 7]
        train_steps = sorted(m.step for m in client.get_metric_history(run_id, "train_loss"))
        assert train_steps == list(range(8))
