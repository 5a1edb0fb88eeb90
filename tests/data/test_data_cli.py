"""Through the real ``zoo`` command: bad data exits 2 with its one-line cause, no traceback, no training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

RECIPE = """\
seed_everything: 0
trainer:
  max_epochs: 1
  default_root_dir: runs
  enable_progress_bar: false
model:
  class_path: {model}
  init_args:
    encoder:
      cell: gru
      hidden_size: 8
    embedding_dim: 8
data:
  class_path: {data}
  init_args:
    batch_size: 4
    cache_dir: cache
"""


def zoo_fit(tmp_path: Path, model: str, data: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tiny.yaml").write_text(RECIPE.format(model=model, data=data), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return subprocess.run(
        [sys.executable, "-m", "zoo", "fit", "-c", "tiny.yaml", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("zoo: error:")]


@pytest.mark.slow
def test_fit_on_float_labels_exits_2_before_training(tmp_path: Path) -> None:
    rows = "".join(f"text {i},{0.37 + i / 100:.2f}\n" for i in range(40))
    (tmp_path / "scores.csv").write_text("text,label\n" + rows, encoding="utf-8")
    proc = zoo_fit(
        tmp_path,
        "zoo.tasks.SequenceClassifier",
        "zoo.data.TextClassificationData",
        "--data.path",
        "csv",
        "--data.data_files",
        "{train: scores.csv}",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == [
        "zoo: error: split 'train', rows 1 (scores.csv line 2), 2 (scores.csv line 3), 3 (scores.csv line 4) "
        "and 37 more, column 'label': the label 0.37 is not a class. A classifier needs integer or string "
        "class labels; to predict a number, use the Forecaster with TimeSeriesData (regression)"
    ]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists(), "nothing was started"


@pytest.mark.slow
def test_fit_on_a_too_short_stream_exits_2_before_the_first_step(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("the cat sat on the mat\n" * 20, encoding="utf-8")
    (tmp_path / "valid.txt").write_text("the cat\n", encoding="utf-8")
    proc = zoo_fit(
        tmp_path,
        "zoo.tasks.LanguageModel",
        "zoo.data.LanguageModelingData",
        "--data.data_files",
        "{train: train.txt, validation: valid.txt}",
        "--trainer.logger",
        "false",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == [
        "zoo: error: split 'validation' has 3 tokens, too few to cut into 4 rows of at least 2 tokens "
        "(batch_size rows per process); add text to the split or lower --data.batch_size"
    ]
    assert "Epoch 0" not in proc.stdout + proc.stderr
