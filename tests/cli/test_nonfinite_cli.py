"""``zoo fit`` on diverging and worse models, as a user runs it: a real subprocess, the real quickstart
recipe made tiny, a real MLflow SQLite store. A diverged fit exits 1 and registers nothing; the champion
moves only to a model at least as good."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_support import REPO, Result, run_zoo, zoo_env
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

NAME = "cuisine-gru"  # the quickstart's registered name
FAULTY = "cuisine-faulty"
# the quickstart recipe, tiny: 4 cuisines, distance 1 to 2, hidden size 16, 2 epochs of 16 batches;
# val_acc about 0.86 after it (chance 0.25)
TINY = [
    "-c", str(REPO / "recipes" / "quickstart.yaml"),
    "--trainer.max_epochs", "2",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--data.train_size", "512", "--data.val_size", "64", "--data.test_size", "64",
    "--data.max_distance", "2", "--data.eval_distance", "2", "--data.num_cuisines", "4",
    "--model.encoder.hidden_size", "16", "--model.learning_rate", "0.03",
]  # fmt: skip
STEPS_PER_EPOCH = 16
# a fit of one training step, then validation: near chance (0.25)
ONE_STEP = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]
FAULTY_MODEL = ["--model", "_faulty.FaultyClassifier", "--tracking.registered_model_name", FAULTY]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory whose store holds one good quickstart fit: cuisine-gru version 1, champion."""
    work = tmp_path_factory.mktemp("nonfinite")
    good = run_zoo("fit", *TINY, cwd=work)
    assert good.returncode == 0, good.output[-3000:]
    assert champion(work, NAME) == "1"
    return work


def client_of(work: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{work / 'mlflow.db'}")


def champion(work: Path, name: str) -> str:
    return str(client_of(work).get_model_version_by_alias(name, "champion").version)


def versions(work: Path, name: str) -> list[str]:
    return sorted(str(v.version) for v in client_of(work).search_model_versions(f"name='{name}'"))


def latest_run(work: Path) -> object:
    client = client_of(work)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)[0]


def checkpoint_dir(work: Path, version: int | None = None) -> Path:
    """The checkpoint folder ``version_N`` of a fit (default: the latest fit's)."""
    root = work / "runs" / "quickstart" / "checkpoints"
    if version is not None:
        return root / f"version_{version}"
    return max(root.glob("version_*"), key=lambda p: int(p.name.removeprefix("version_")))


def fit(work: Path, *args: str) -> Result:
    return run_zoo("fit", *TINY, *args, cwd=work)


def assert_finite(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()), path
    return state


def test_a_diverging_quickstart_exits_1_and_leaves_the_champion(work: Path) -> None:
    before = versions(work, NAME)
    result = fit(work, "--model.learning_rate", "1e37")
    assert result.returncode == 1, result.output[-3000:]
    assert "Traceback" not in result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("zoo: error:"))
    assert "non-finite" in error and "at global step" in error and "(epoch 0, batch " in error
    assert "--model.learning_rate" in error and "--trainer.gradient_clip_val" in error
    assert "--nonfinite.policy skip" in error
    # nothing registered, the alias where it was, the run failed and holds no model
    assert versions(work, NAME) == before and champion(work, NAME) == before[-1]
    run = latest_run(work)
    assert run.info.status == "FAILED"
    assert "model" not in {a.path for a in client_of(work).list_artifacts(run.info.run_id)}
    assert not list(checkpoint_dir(work).glob("*.ckpt"))
    assert "Registered" not in result.stdout
    # the good fit's checkpoints are untouched and finite
    good = checkpoint_dir(work, 0)
    assert assert_finite(good / "last.ckpt")["global_step"] == 2 * STEPS_PER_EPOCH


def test_nan_in_the_second_epoch_keeps_the_first_epochs_checkpoint(work: Path) -> None:
    step = STEPS_PER_EPOCH + 2
    result = fit(work, *FAULTY_MODEL, "--model.nan_loss_steps", f"[{step}]")
    assert result.returncode == 1, result.output[-3000:]
    folder = checkpoint_dir(work)
    assert f"non-finite training loss (nan) at global step {step} (epoch 1, batch 2)" in result.stderr
    assert f"the last good checkpoint is {folder / 'last.ckpt'};" in result.stderr
    # only the first epoch's checkpoints: last.ckpt is the state before the NaN, finite and loadable
    assert sorted(p.name for p in folder.glob("*.ckpt")) == [
        f"epoch=0-step={STEPS_PER_EPOCH}.ckpt",
        "last.ckpt",
    ]
    last = assert_finite(folder / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (0, STEPS_PER_EPOCH)
    from _faulty import FaultyClassifier

    model = FaultyClassifier.load_from_checkpoint(folder / "last.ckpt", weights_only=True)
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]]))).all()
    assert FAULTY not in {m.name for m in client_of(work).search_registered_models()}
    assert latest_run(work).info.status == "FAILED"


def test_skip_policy_skips_counts_and_registers_a_finite_model(work: Path) -> None:
    result = fit(
        work, *FAULTY_MODEL,
        "--model.nan_loss_steps", "[2, 20]", "--model.nan_grad_steps", "[5]",
        "--nonfinite.policy", "skip", "--tracking.registered_model_name", "cuisine-skip",
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "Skipped 3 training batches with a non-finite loss or gradient" in result.stdout
    run = latest_run(work)
    history = client_of(work).get_metric_history(run.info.run_id, "nonfinite_skipped")
    assert [m.value for m in history] == [2.0, 3.0]  # steps 2 and 5 in epoch 0, step 20 in epoch 1
    assert_finite(checkpoint_dir(work) / "last.ckpt")
    assert versions(work, "cuisine-skip") == ["1"]


def test_a_worse_model_does_not_move_the_champion_unless_forced(work: Path) -> None:
    holder = champion(work, NAME)
    held = client_of(work).get_model_version(NAME, holder).tags
    worse = fit(work, *ONE_STEP)
    assert worse.returncode == 0, worse.output[-3000:]
    new = str(int(versions(work, NAME)[-1]))
    line = next(x for x in worse.stdout.splitlines() if x.startswith(f"Registered {NAME} version {new}"))
    assert f"; champion stays at version {holder} (val_acc " in line
    assert line.endswith("; pass --tracking.force_alias true to move it")
    mine, theirs = (float(x) for x in line.split("(val_acc ")[1].split(")")[0].split(" < "))
    assert math.isclose(theirs, float(held["zoo.metric_value"]), rel_tol=1e-3) and mine < theirs
    assert champion(work, NAME) == holder
    assert f'zoo.load_model("models:/{NAME}/{new}")' in worse.stdout
    assert client_of(work).get_run(latest_run(work).info.run_id).data.tags["zoo.registration"] == line
    forced = fit(work, *ONE_STEP, "--tracking.force_alias", "true")
    assert forced.returncode == 0, forced.output[-3000:]
    assert champion(work, NAME) == versions(work, NAME)[-1] != holder
    assert f'zoo.load_model("models:/{NAME}@champion")' in forced.stdout


def test_a_nonfinite_metric_is_never_registered(work: Path) -> None:
    result = fit(
        work, *FAULTY_MODEL, "--model.nan_val", "true", "--tracking.registered_model_name", "cuisine-nanval",
        "--checkpoint.monitor", "val_loss", "--checkpoint.mode", "min",
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "Model not logged nor registered: its monitored val_loss is inf (non-finite)" in result.stdout
    assert "cuisine-nanval" not in {m.name for m in client_of(work).search_registered_models()}
    run = latest_run(work)
    assert "model" not in {a.path for a in client_of(work).list_artifacts(run.info.run_id)}
    assert run.data.tags["zoo.registration"].startswith("Model not logged nor registered")


def test_a_nan_on_one_ddp_rank_stops_both_ranks_together(tmp_path: Path) -> None:
    """Rank 1 alone gets a NaN loss at step 3: both processes stop there (no hang), exit 1."""
    command = [
        sys.executable, "-m", "zoo", "fit", *TINY, *FAULTY_MODEL,
        "--model.nan_loss_steps", "[3]", "--model.fault_rank", "1",
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.logger", "false",
    ]  # fmt: skip
    env = {**zoo_env(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the rank it started
        output, _ = proc.communicate()
        pytest.fail(f"a NaN on one rank hung the fit:\n{output[-3000:]}")
    assert proc.returncode == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("zoo: error:")]
    assert len(errors) == 2, output[-3000:]  # one per rank, at the same step
    assert all("at global step 3 (epoch 0, batch 3)" in line for line in errors), errors
    assert sum("non-finite training loss (nan)" in line for line in errors) == 1, errors
    assert sum("a non-finite loss or gradient on another process" in line for line in errors) == 1, errors
    assert not list(tmp_path.glob("runs/quickstart/checkpoints/version_*/*.ckpt"))
