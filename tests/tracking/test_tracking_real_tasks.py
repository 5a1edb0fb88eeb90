"""The predictor on the zoo's own task modules (skipped until ``zoo.tasks`` is importable)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tracking_toys import ToyTextData

from zoo.tracking.predict import Predictor, task_kind

tasks = pytest.importorskip("zoo.tasks", reason="zoo.tasks is not importable yet")
ENCODER = {"cell": "gru", "hidden_size": 8}
TEXTS = ["the chef added honey", "", "crème brûlée", " ".join(["salt"] * 40)]


@pytest.fixture(scope="module")
def data() -> ToyTextData:
    return ToyTextData(num_train=32)


def test_sequence_classifier(data: ToyTextData) -> None:
    torch.manual_seed(0)
    task = tasks.SequenceClassifier(
        ENCODER, vocab_size=data.vocab_size, num_classes=2, embedding_dim=8, label_names=data.label_names
    ).eval()
    assert task_kind(task) == "classification"
    out = Predictor(task, "classification", data.tokenizer, {"max_length": 32}).predict(TEXTS)
    ids = torch.tensor([data.tokenizer.encode(TEXTS[0]).ids])
    with torch.no_grad():
        want = task.predict_step({"input_ids": ids})["probs"][0]
    np.testing.assert_allclose(list(out[0]["probabilities"].values()), want.numpy(), atol=1e-6)
    assert out[1]["label"] is None and out[3]["truncated"] is True and out[3]["num_tokens"] == 32


def test_token_tagger(data: ToyTextData) -> None:
    task = tasks.TokenTagger(
        vocab_size=data.vocab_size, num_tags=3, embedding_dim=8, tag_names=["A", "B", "C"]
    )
    assert task_kind(task) == "tagging"
    out = Predictor(task.eval(), "tagging", data.tokenizer).predict(TEXTS[:2])
    assert out[0]["words"] == ["the", "chef", "added", "honey"]
    assert len(out[0]["tags"]) == 4 and set(out[0]["tags"]) <= {"A", "B", "C"}
    assert out[1] == {"words": [], "tags": [], "truncated": False}


def test_language_model(data: ToyTextData) -> None:
    torch.manual_seed(0)
    task = tasks.LanguageModel(ENCODER, vocab_size=data.vocab_size, embedding_dim=8).eval()
    assert task_kind(task) == "language_model"
    model = Predictor(task, "language_model", data.tokenizer, {"data": {"bos_id": 2}})
    out = model.predict(["the chef", ""], max_new_tokens=4, seed=1)
    want = task.generate(data.tokenizer.encode("the chef").ids, 4, seed=1)
    assert out[0]["continuation"] == data.tokenizer.decode(want)
    assert out[1]["prompt"] == ""


def test_forecaster() -> None:
    torch.manual_seed(0)
    task = tasks.Forecaster(
        ENCODER, num_features=2, num_targets=1, horizon=2, target_mean=[3.0], target_std=[2.0]
    )
    assert task_kind(task) == "forecasting"
    window = np.random.default_rng(0).normal(size=(6, 2))
    out = Predictor(task.eval(), "forecasting", None).predict(window)
    with torch.no_grad():
        want = task.predict_step({"inputs": torch.tensor(window, dtype=torch.float32)[None]})[0, :, 0]
    np.testing.assert_allclose([r["target_0"] for r in out], want.numpy(), atol=1e-6)
