"""The default output of a quickstart, of ``zoo.load_model`` and of ``zoo test``: progress bars, the model
summary, the closing summary and where the model went, and no other line; ``--verbose`` shows the rest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import REPO, zoo_env

QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")
SHORT = (
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "2",
    "--trainer.log_every_n_steps", "1",
)  # fmt: skip
LIMIT_TEST = ("--trainer.limit_test_batches", "2")

#: Every line the commands may print besides progress bars. Anything else (a warning, a log record, a
#: library's advert or notice) fails the test; add a line here only when a user needs to read it.
ALLOWED = [
    r"\s*\|\s*Name\s+\|",  # model summary: header
    r"\d+\s+\|",  # model summary: a layer
    r"[-─]{10,}$",  # model summary and test table rules
    r"[\d.]+\s*[KMGT]?\s+(Trainable params|Non-trainable params|Total params|Total estimated model params "
    r"size|Modules in (train|eval) mode|Total Flops)",
    r"`Trainer\.fit` stopped: `max_epochs=1` reached\.$",  # why training ended
    r"GPU available: True|LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES",  # on a GPU machine: which device
    r"Best val_acc: [\d.]+$",  # FitSummary
    r"Checkpoints: ",
    r"MLflow run \w+ in sqlite:",
    r"\s*browse:\s+mlflow ui ",
    r"Registered cuisine-gru version 1; ",  # LogModelCallback
    r"Load it: ",
    r"Serve it: ",
    r"Restoring states from the checkpoint path at ",  # zoo test --ckpt_path best
    r"Loaded model weights from the checkpoint at ",
    r"\s*(Test metric|test_acc|test_f1|test_loss)\s",
    r"\[\{'label': ",  # the prediction the script below prints
]
_ALLOWED = re.compile("|".join(f"(?:{p})" for p in ALLOWED))
#: Lightning's progress bars (only these: another library's bar is noise)
_PROGRESS = re.compile(r"\s*(Sanity Checking|Training|Validation|Testing|Epoch \d+)(:| DataLoader \d+:)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def unexpected_lines(text: str) -> list[str]:
    """Lines of ``text`` (split at newlines and carriage returns) that are neither one of Lightning's
    progress bars nor allowed."""
    lines = (_ANSI.sub("", line).rstrip() for line in re.split(r"[\r\n]", text))
    return [ln for ln in lines if ln.strip() and not _PROGRESS.match(ln) and not _ALLOWED.match(ln)]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = zoo_env()
    env.pop("PYTHONWARNINGS", None)  # warnings as a user sees them
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_quickstart_load_and_test_print_nothing_outside_the_allow_list(tmp_path: Path) -> None:
    fit = run(["-m", "zoo", "fit", "-c", QUICKSTART, *SHORT], tmp_path)
    assert fit.returncode == 0, fit.stderr
    assert unexpected_lines(fit.stdout + "\n" + fit.stderr) == []
    for shown in ("Epoch 0", "Trainable params", "Best val_acc", "Load it:", "Serve it:"):
        assert shown in fit.stdout + fit.stderr

    script = "import zoo; print(zoo.load_model('models:/cuisine-gru@champion').predict(['the chef']))"
    load = run(["-c", script], tmp_path)
    assert load.returncode == 0, load.stderr
    assert unexpected_lines(load.stdout + "\n" + load.stderr) == []
    assert "'label'" in load.stdout

    test = run(["-m", "zoo", "test", "-c", QUICKSTART, "--ckpt_path", "best", *LIMIT_TEST], tmp_path)
    assert test.returncode == 0, test.stderr
    assert unexpected_lines(test.stdout + "\n" + test.stderr) == []
    assert [p.name for p in (tmp_path / "runs/quickstart/checkpoints").iterdir()] == ["version_0"]


@pytest.mark.slow
def test_verbose_shows_what_the_default_hides(tmp_path: Path) -> None:
    result = run(["-m", "zoo", "--verbose", "fit", "-c", QUICKSTART, "--trainer.fast_dev_run", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Seed set to 0" in result.stderr
    assert "GPU available: False" in result.stderr  # (a tokenising bar shows only when nothing is cached)
    assert "litlogger" in result.stderr


def test_the_allow_list_catches_noise() -> None:
    noise = [
        "Seed set to 0",
        "2026/12/05 20:16:29 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
        "/x/_pytree.py:21: `isinstance(treespec, LeafSpec)` is deprecated",
        "Registered model 'cuisine-gru' already exists. Creating a new version of this model...",
        "Downloading artifacts: 100%|██████████| 4/4 [00:00<00:00, 9.1kit/s]",
        "tokenising train: 100%|██████████| 2000/2000 [00:00<00:00, 21486.39 examples/s]",
    ]
    assert unexpected_lines("\n".join(noise)) == noise
    assert unexpected_lines("Epoch 0: 100%|██████████| 5/5 [00:00<00:00, 33.5it/s, v_num=80dd]") == []
