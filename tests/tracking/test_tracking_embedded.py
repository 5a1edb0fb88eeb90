"""The whole flow with no server: LightningCLI -> embedded SQLite in a fresh directory -> registry -> a
fresh process that loads the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lightning.pytorch.cli import LightningCLI
from mlflow import MlflowClient
from tracking_support import child_env
from tracking_toys import ToyClassifier, ToyTextData

from zoo import load_model
from zoo.tracking import LogModelCallback, MLflowSaveConfigCallback

pytestmark = pytest.mark.slow
TEXTS = ["the chef added honey", "garlic and onion", "", "日本語 🍣"]


class ToyCLI(LightningCLI):
    """The wiring the `zoo` CLI uses: sizes linked from the data, the tracking callback as `tracking:`."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(LogModelCallback, "tracking")
        for name in ("vocab_size", "num_classes", "label_names", "pad_id"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")


def run_cli(seed: int, root: Path) -> ToyCLI:
    args = [
        "fit",
        f"--seed_everything={seed}",
        "--model=tracking_toys.ToyClassifier",
        "--data=tracking_toys.ToyTextData",
        f"--data.seed={seed}",
        "--trainer.max_epochs=2",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.log_every_n_steps=4",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=zoo.tracking.ZooMLFlowLogger",
        "--trainer.logger.experiment_name=cuisine",
        "--tracking.log_model=true",
        "--tracking.registered_model_name=toy-local",
        # no checkpoint monitors a metric here: without force the alias would stay on the first version
        "--tracking.force_alias=true",
    ]
    return ToyCLI(
        ToyClassifier,
        ToyTextData,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=MLflowSaveConfigCallback,
        args=args,
    )


def test_cli_fit_tracks_into_sqlite_and_registers_without_a_server(fresh_cwd: Path) -> None:
    first = run_cli(1, fresh_cwd)
    second = run_cli(2, fresh_cwd)
    assert (fresh_cwd / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{fresh_cwd}/mlflow.db")
    # MLflow keeps a SQLite store's artifacts under ./mlruns, recorded as an absolute location
    assert client.get_experiment_by_name("cuisine").artifact_location.startswith(str(fresh_cwd))
    assert str(client.get_model_version_by_alias("toy-local", "champion").version) == "2"
    assert sorted(str(v.version) for v in client.search_model_versions("name='toy-local'")) == ["1", "2"]

    run_id = second.trainer.logger.run_id  # type: ignore[union-attr]
    config = client.download_artifacts(run_id, "config.yaml", str(fresh_cwd))
    text = Path(config).read_text()
    assert "tracking_toys.ToyClassifier" in text and "registered_model_name: toy-local" in text
    assert "seed_everything: 2" in text

    model = load_model("models:/toy-local@champion")
    assert model.config is not None and "seed_everything: 2" in model.config
    want = second.model.eval()
    from zoo.tracking.predict import Predictor

    expected = Predictor(want, "classification", second.datamodule.tokenizer).predict(TEXTS)
    got = model.predict(TEXTS)
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(
            list(g["probabilities"].values()), list(e["probabilities"].values()), atol=1e-6
        )
    assert first.trainer.logger.run_id != run_id  # type: ignore[union-attr]

    # a fresh process, in another empty directory, with only the store's location
    elsewhere = fresh_cwd.parent / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import json, sys, mlflow\n"
        "m = mlflow.pyfunc.load_model('models:/toy-local@champion')\n"
        "print(json.dumps(m.predict(json.loads(sys.argv[1]))))\n"
    )
    env = child_env(MLFLOW_TRACKING_URI=f"sqlite:///{fresh_cwd}/mlflow.db")
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(TEXTS)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    for g, e in zip(fresh, expected, strict=True):
        assert g["label"] == e["label"]
        np.testing.assert_allclose(
            list(g["probabilities"].values()), list(e["probabilities"].values()), atol=1e-6
        )


def test_config_goes_to_the_log_dir_without_an_mlflow_logger(fresh_cwd: Path) -> None:
    args = [
        "fit",
        "--model=tracking_toys.ToyClassifier",
        "--data=tracking_toys.ToyTextData",
        "--data.num_train=16",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={fresh_cwd}",
    ]
    cli = ToyCLI(
        ToyClassifier,
        ToyTextData,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=MLflowSaveConfigCallback,
        args=args,
    )
    saved = Path(cli.trainer.log_dir) / "config.yaml"  # type: ignore[arg-type]
    assert "tracking_toys.ToyClassifier" in saved.read_text()
    assert not (fresh_cwd / "mlflow.db").exists()
