"""Crash safety of `zoo fit`: a truly last checkpoint, and a run killed with SIGKILL that resumes exactly.

The runs are real `python -m zoo fit` subprocesses on the quickstart's data module (CuisineMemoryData)
with a tiny GRU, on CPU in deterministic mode, tracked into a real SQLite MLflow store in tmp_path.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from cli_support import REPO, run_zoo, zoo_env

QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")
TRAIN_SIZE, BATCH = 640, 16
STEPS_PER_EPOCH = TRAIN_SIZE // BATCH  # 40
EPOCHS = 3
# the quickstart recipe made tiny: 120 steps of a GRU with 8 units; dropout makes the RNG state matter
TINY = (
    "-c", QUICKSTART,
    "--model.encoder.hidden_size", "8",
    "--model.embedding_dim", "8",
    "--model.dropout", "0.2",
    "--data.train_size", str(TRAIN_SIZE),
    "--data.val_size", "32",
    "--data.test_size", "32",
    "--data.max_distance", "6",
    "--data.eval_distance", "6",
    "--data.batch_size", str(BATCH),
    "--trainer.max_epochs", str(EPOCHS),
    "--trainer.deterministic", "true",
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.num_sanity_val_steps", "0",
    "--trainer.default_root_dir", "runs",
    "--tracking.log_model", "false",
    "--tracking.registered_model_name", "null",
)  # fmt: skip


def ckpt_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "runs" / "checkpoints").glob("version_*"))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def metric_history(cwd: Path, run_id: str) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in client.get_run(run_id).data.metrics
    }


def run_status(cwd: Path, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}").get_run(run_id).info.status


def step_of(path: Path) -> int:
    """global_step of a checkpoint, or -1 while it cannot be read."""
    try:
        return int(torch.load(path, weights_only=True)["global_step"])
    except Exception:
        return -1


@pytest.mark.slow
def test_last_ckpt_holds_the_last_epoch_when_the_best_is_earlier(tmp_path: Path) -> None:
    # monitoring the largest val_loss makes epoch 0 the best: Lightning's save_top_k=1 then left last.ckpt
    # at the best epoch, not the last one
    result = run_zoo(
        "fit", *TINY, "--trainer.max_epochs", "2", "--data.train_size", "320",
        "--checkpoint.monitor", "val_loss", "--checkpoint.mode", "max",
        "--checkpoint.last_every_n_train_steps", "0",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    (folder,) = ckpt_dirs(tmp_path)
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 2 * 320 // BATCH)
    (best,) = [p for p in folder.glob("*.ckpt") if p.name != "last.ckpt"]
    assert torch.load(best, weights_only=True)["epoch"] == 0
    assert not list(folder.glob(".*partial")), "a temporary checkpoint file was left behind"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_fit_killed_mid_epoch_resumes_to_the_same_weights_run_and_folder(tmp_path: Path, stop: int) -> None:
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    reference.mkdir(), crashed.mkdir()
    every = ("--checkpoint.last_every_n_train_steps", "7")  # 7 does not divide the 40 steps of an epoch

    # the uninterrupted run and the one to be killed run side by side (separate folders and stores)
    uninterrupted, proc = (
        subprocess.Popen(
            [sys.executable, "-m", "zoo", "fit", *TINY, *every],
            cwd=cwd,
            env=zoo_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cwd in (reference, crashed)
    )
    last = crashed / "runs" / "checkpoints" / "version_0" / "last.ckpt"
    deadline = time.monotonic() + 120
    while step_of(last) < STEPS_PER_EPOCH + 7 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(stop)
    _, err = proc.communicate()
    run_id = json.loads((last.parent / "mlflow_run.json").read_text())["run_id"]
    killed_at = step_of(last)
    if stop == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{err[-3000:]}"
        assert 0 < killed_at < EPOCHS * STEPS_PER_EPOCH and killed_at % STEPS_PER_EPOCH, killed_at
    else:
        # stopped between two batches: last.ckpt is written there, the run is KILLED, the exit status 143
        assert proc.returncode == 128 + signal.SIGTERM, f"the run ended before SIGTERM:\n{err[-3000:]}"
        assert f"zoo: stopped by SIGTERM at step {killed_at}" in err, err[-3000:]
        assert "--ckpt_path last" in err
        assert run_status(crashed, run_id) == "KILLED"
        assert STEPS_PER_EPOCH + 7 <= killed_at < EPOCHS * STEPS_PER_EPOCH, killed_at

    resumed = run_zoo("fit", *TINY, *every, "--ckpt_path", "last", cwd=crashed)
    assert resumed.returncode == 0, resumed.output
    _, err = uninterrupted.communicate(timeout=240)
    assert uninterrupted.returncode == 0, err[-3000:]

    # the same folder and the same MLflow run, now FINISHED
    assert ckpt_dirs(crashed) == [last.parent]
    assert json.loads((last.parent / "mlflow_run.json").read_text())["run_id"] == run_id
    assert run_status(crashed, run_id) == "FINISHED"
    # the final weights equal the uninterrupted run's exactly
    want, got = weights(ckpt_dirs(reference)[0] / "last.ckpt"), weights(last)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    # the best score carried over the crash (the first epoch after resume did not become "best" anew)
    best = {p.name for p in last.parent.glob("*.ckpt")}
    assert best == {p.name for p in ckpt_dirs(reference)[0].glob("*.ckpt")}
    # one value per metric and step, the same history as the uninterrupted run's
    ref_run = json.loads((ckpt_dirs(reference)[0] / "mlflow_run.json").read_text())["run_id"]
    history, ref_history = metric_history(crashed, run_id), metric_history(reference, ref_run)
    for key, points in history.items():
        steps = [s for s, _ in points]
        # Lightning logs `epoch` with both the training and the validation metrics of an epoch's last step
        if key != "epoch":
            assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {steps}"
    # wall time is the one metric a resumed run must not share with an uninterrupted one
    for timed in (history, ref_history):
        assert timed.pop("fit_seconds")
    assert history == ref_history


def test_fit_ckpt_path_last_without_a_checkpoint_is_a_config_error(zoo_main) -> None:
    result = zoo_main("fit", *TINY, "--ckpt_path", "last")
    assert result.returncode == 2
    assert "no last checkpoint found" in result.stderr
    assert not Path("runs/checkpoints").exists(), "nothing may be created before the error"


def test_fit_ckpt_path_to_a_missing_file_is_a_config_error(zoo_main) -> None:
    result = zoo_main("fit", *TINY, "--ckpt_path", "nowhere/last.ckpt")
    assert result.returncode == 2
    assert result.stderr.startswith("zoo: error: checkpoint nowhere/last.ckpt does not exist."), result.stderr


class CopyLast(L.Callback):
    """Keeps a copy of last.ckpt as it was after optimizer step ``step``."""

    def __init__(self, step: int, to: Path) -> None:
        self.step, self.to = step, to

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # checkpoint callbacks run last: at step + 1 the file still holds step
        if trainer.global_step == self.step + 1:
            shutil.copy(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt", self.to)  # type: ignore[union-attr]


@pytest.mark.slow
def test_lm_on_the_ordered_stream_resumed_mid_epoch_carries_its_state_exactly(tmp_path: Path) -> None:
    # the stream position and the recurrent state carried between windows are both in the checkpoint
    from zoo.cli import ZooCheckpoint
    from zoo.data import LanguageModelingData
    from zoo.encoder import EncoderConfig
    from zoo.tasks import LanguageModel

    words = torch.randint(0, 30, (2000,), generator=torch.Generator().manual_seed(0)).tolist()
    for split, n in (("train", 1600), ("valid", 400)):
        lines = [" ".join(f"w{w}" for w in words[i : i + 20]) for i in range(0, n, 20)]
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")

    def fit(folder: Path, ckpt_path: Path | None = None, extra: tuple = ()) -> dict[str, torch.Tensor]:
        L.seed_everything(0)
        data = LanguageModelingData(
            data_files={"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "valid.txt")},
            seq_len=5, batch_size=4, cache_dir=str(tmp_path / "cache"),
        )  # fmt: skip
        model = LanguageModel(
            encoder=EncoderConfig(cell="gru", hidden_size=8), vocab_size=data.vocab_size, embedding_dim=8,
            dropout=0.3,
        )  # fmt: skip
        checkpoints = ZooCheckpoint(dirpath=str(folder), last_every_n_train_steps=1)
        trainer = L.Trainer(
            max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
            deterministic=True, num_sanity_val_steps=0, callbacks=[checkpoints, *extra],
        )  # fmt: skip
        trainer.fit(model, data, ckpt_path=ckpt_path)
        return {k: v.clone() for k, v in model.state_dict().items()}

    snapshot = tmp_path / "step_30.ckpt"
    want = fit(tmp_path / "uninterrupted", extra=(CopyLast(30, snapshot),))
    saved = torch.load(snapshot, weights_only=True)
    steps_per_epoch = 1600 // 4 // 5
    assert saved["global_step"] == 30 < steps_per_epoch and "carried_train_state" in saved
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(snapshot, resumed_dir / "last.ckpt")
    got = fit(resumed_dir, ckpt_path=resumed_dir / "last.ckpt")
    for name in want:
        assert torch.equal(want[name], got[name]), name
