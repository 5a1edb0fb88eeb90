"""Every task kind as a pyfunc model: logged with a signature, loaded back, predicting like the module."""

from __future__ import annotations

from pathlib import Path

import lightning
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from tracking_toys import ToyForecaster, ToyLanguageModel, ToyTagger, ToyTextData

from zoo import load_model
from zoo.tracking import log_pyfunc_model
from zoo.tracking.predict import Predictor, class_path, task_kind

pytestmark = pytest.mark.slow


def _log(task: lightning.LightningModule, root: Path, tokenizer: object, info: dict, example: object) -> str:
    ckpt = root / f"{type(task).__name__}.ckpt"
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        ckpt,
    )
    meta = {"task_class": class_path(task), "kind": task_kind(task), **info}
    with mlflow.start_run():
        return str(log_pyfunc_model(ckpt, meta, tokenizer, "seed_everything: 0\n", example).model_uri)


def test_each_kind_round_trips_through_pyfunc(fresh_cwd: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{fresh_cwd}/mlflow.db")
    torch.manual_seed(0)
    data = ToyTextData()

    forecaster = ToyForecaster(num_features=2, horizon=3, target_mean=[5.0], target_std=[2.0]).eval()
    window = pd.DataFrame({"load": np.sin(np.arange(10.0)), "temp": np.arange(10.0) / 10})
    info = {"data": {"feature_columns": ["load", "temp"], "target_columns": ["load"], "input_length": 10}}
    uri = _log(forecaster, fresh_cwd, None, info, None)
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.metadata.get_input_schema().input_names() == ["load", "temp"]
    want = Predictor(forecaster, "forecasting", None, info).predict(window)
    got = pyfunc.predict(window)
    assert [r["step"] for r in got] == [1, 2, 3]
    np.testing.assert_allclose([r["load"] for r in got], [r["load"] for r in want], atol=1e-6)
    assert load_model(uri).predict(window) == got

    tagger = ToyTagger(vocab_size=data.vocab_size, tag_names=["O", "FOOD", "X"]).eval()
    uri = _log(tagger, fresh_cwd, data.tokenizer, {}, ["the chef added honey"])
    texts = ["the chef added honey", "", "ünïcode words"]
    want = Predictor(tagger, "tagging", data.tokenizer).predict(texts)
    assert mlflow.pyfunc.load_model(uri).predict(texts) == want
    assert load_model(uri).config == "seed_everything: 0\n"

    lm = ToyLanguageModel(vocab_size=data.vocab_size).eval()
    info = {"data": {"bos_id": 2}, "generation": {"max_new_tokens": 4, "seed": 7}}
    uri = _log(lm, fresh_cwd, data.tokenizer, info, ["the chef"])
    want = Predictor(lm, "language_model", data.tokenizer, info).predict(["the chef added", ""])
    assert mlflow.pyfunc.load_model(uri).predict(["the chef added", ""]) == want
    assert len(data.tokenizer.encode(want[0]["continuation"]).ids) <= 4
