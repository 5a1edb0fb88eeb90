"""Against a real ``mlflow server``: runs, pyfunc models, registry versions and aliases, REST serving."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from tracking_support import free_port, stop_process_group, wait_http
from tracking_toys import fit_toy

from zoo import load_model
from zoo.tracking import RegistryNameConflict
from zoo.tracking.predict import Predictor
from zoo.tracking.registry import TASK_TAG

pytestmark = pytest.mark.slow
NAME = "toy-sweet-savory"
TEXTS = ["the chef added honey", "salt and pepper then stirred it", "", "crème brûlée 🍮", "cake " * 600]


def assert_same_predictions(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert list(g["probabilities"]) == list(w["probabilities"])
        np.testing.assert_allclose(
            list(g["probabilities"].values()), list(w["probabilities"].values()), atol=1e-6
        )
        assert (g["num_tokens"], g["truncated"]) == (w["num_tokens"], w["truncated"])


@pytest.fixture(scope="module")
def two_fits(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two fits registered under one name: versions 1 and 2, the alias forced onto the second (these
    checkpoints monitor no metric, so without force the alias would stay on the first)."""
    root = tmp_path_factory.mktemp("fits")
    first = fit_toy(root, mlflow_server, NAME, seed=1)
    client = MlflowClient(mlflow_server)
    alias_after_first = client.get_model_version_by_alias(NAME, "champion").version
    second = fit_toy(root, mlflow_server, NAME, seed=2, force_alias=True)
    return {"first": first, "second": second, "alias_after_first": alias_after_first, "client": client}


def test_versions_and_alias_move(two_fits: dict[str, Any]) -> None:
    client = two_fits["client"]
    assert str(two_fits["first"][2].model_version.version) == "1"
    assert str(two_fits["second"][2].model_version.version) == "2"
    assert str(two_fits["alias_after_first"]) == "1"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    model = client.get_registered_model(NAME)
    assert model.tags[TASK_TAG] == "tracking_toys.ToyClassifier"


def test_registered_model_predicts_like_the_trained_one(mlflow_server: str, two_fits: dict[str, Any]) -> None:
    trainer, module, _, data = two_fits["second"]
    module.eval()
    in_memory = Predictor(module, "classification", data.tokenizer, {"max_length": 512})
    loaded = load_model(f"models:/{NAME}@champion", tracking_uri=mlflow_server)
    assert type(loaded.task).__name__ == "ToyClassifier"
    assert loaded.tokenizer.get_vocab() == data.tokenizer.get_vocab()
    assert_same_predictions(loaded.predict(TEXTS), in_memory.predict(TEXTS))
    assert loaded.predict([]) == []
    # the first version is still there and is a different model
    v1 = load_model(f"models:/{NAME}/1", tracking_uri=mlflow_server)
    assert v1.predict(TEXTS[:2]) != loaded.predict(TEXTS[:2])


def test_run_holds_params_metrics_tokenizer_and_plots(two_fits: dict[str, Any]) -> None:
    client = two_fits["client"]
    trainer = two_fits["second"][0]
    run_id = trainer.logger.run_id
    run = client.get_run(run_id)
    assert run.data.params["cell"] == "gru"
    assert int(run.data.params["num_parameters"]) == sum(
        p.numel() for p in two_fits["second"][1].parameters()
    )
    assert {"train_loss", "val_loss", "val_acc"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run_id, "train_loss")) >= 3
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "plots")
    }
    assert {"tokenizer.json", "plots/learning_curves.png"} <= artifacts
    assert "plots/gates.png" in artifacts  # a GRU: the heatmap of one validation example


def test_a_name_held_by_another_task_is_refused_before_training(
    mlflow_server: str, two_fits: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(RegistryNameConflict, match=f"{NAME}.*tracking_toys.ToyClassifier.*ToyTagger"):
        fit_toy(tmp_path, mlflow_server, NAME, seed=3, task="tagger")
    assert len(two_fits["client"].search_model_versions(f"name='{NAME}'")) == 2


def _post(url: str, payload: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_serve_scores_json_like_the_model(
    mlflow_server: str, two_fits: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracking_support import child_env

    from zoo.tracking import start_server

    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    monkeypatch.chdir(tmp_path)  # a fresh process in an empty directory: everything comes from the server
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = start_server(
            f"models:/{NAME}@champion", port=port, tracking_uri=mlflow_server, stdout=out, stderr=-2
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=90, log=log)
        module, data = two_fits["second"][1], two_fits["second"][3]
        want = Predictor(module.eval(), "classification", data.tokenizer).predict(TEXTS)
        url = f"http://127.0.0.1:{port}/invocations"
        assert_same_predictions(_post(url, {"inputs": TEXTS})["predictions"], want)
        assert _post(url, {"inputs": []})["predictions"] == []
        with pytest.raises(urllib.error.HTTPError, match="400"):
            _post(url, {"instances": [{"x": 1}]})
    finally:
        stop_process_group(proc)
    assert proc.poll() is not None
