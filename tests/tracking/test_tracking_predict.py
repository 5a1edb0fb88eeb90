"""The predictor behind zoo.load_model and the pyfunc model, on toy tasks with the zoo's task API."""

from __future__ import annotations

import lightning
import numpy as np
import pandas as pd
import pytest
import torch
from tracking_toys import (
    SAVORY,
    SWEET,
    ToyClassifier,
    ToyForecaster,
    ToyLanguageModel,
    ToyTagger,
    ToyTextData,
)

from zoo.tracking.predict import Predictor, as_texts, class_path, task_kind


@pytest.fixture(scope="module")
def data() -> ToyTextData:
    return ToyTextData()


@pytest.fixture(scope="module")
def classifier(data: ToyTextData) -> Predictor:
    torch.manual_seed(0)
    task = ToyClassifier(vocab_size=data.vocab_size, label_names=data.label_names).eval()
    return Predictor(task, task_kind(task), data.tokenizer, {"max_length": 16, "data": {"pad_id": 0}})


def test_kind_is_read_from_the_task_api() -> None:
    assert task_kind(ToyClassifier()) == "classification"
    assert task_kind(ToyTagger()) == "tagging"
    assert task_kind(ToyLanguageModel()) == "language_model"
    assert task_kind(ToyForecaster()) == "forecasting"
    with pytest.raises(ValueError, match="cannot tell which task"):
        task_kind(torch.nn.Linear(1, 1))


def test_classification_matches_the_module(classifier: Predictor, data: ToyTextData) -> None:
    texts = ["the chef added honey", "salt and pepper then stirred it", "cake"]
    out = classifier.predict(texts)
    assert [set(o) for o in out] == [{"label", "probabilities", "num_tokens", "truncated"}] * 3
    for text, o in zip(texts, out, strict=True):
        ids = torch.tensor([data.tokenizer.encode(text).ids])
        with torch.no_grad():
            probs = classifier.task(ids, torch.tensor([ids.shape[1]])).softmax(-1)[0]
        assert list(o["probabilities"]) == ["savory", "sweet"]
        np.testing.assert_allclose(list(o["probabilities"].values()), probs.numpy(), atol=1e-6)
        assert o["label"] == ["savory", "sweet"][int(probs.argmax())]
        assert o["num_tokens"] == ids.shape[1] and o["truncated"] is False


def test_padding_in_a_batch_does_not_change_a_prediction(classifier: Predictor) -> None:
    short, long = "honey", "the chef added some salt and then stirred it"
    alone = classifier.predict([short])[0]["probabilities"]
    batched = classifier.predict([long, short])[1]["probabilities"]
    np.testing.assert_allclose(list(alone.values()), list(batched.values()), atol=1e-6)


def test_classification_edge_inputs(classifier: Predictor) -> None:
    assert classifier.predict([]) == []
    assert classifier.predict(pd.DataFrame({"text": []})) == []
    empty = classifier.predict([""])[0]
    assert empty == {"label": None, "probabilities": {}, "num_tokens": 0, "truncated": False}
    long_text = " ".join(["honey"] * 10_000)
    long = classifier.predict([long_text])[0]
    assert long["truncated"] is True and long["num_tokens"] == 16
    # truncation keeps the first max_length tokens: the same as predicting those tokens alone
    head = classifier.predict([" ".join(["honey"] * 16)])[0]
    np.testing.assert_allclose(
        list(long["probabilities"].values()), list(head["probabilities"].values()), atol=1e-6
    )
    uni = classifier.predict(["crème brûlée 🍮 和菓子", "honey ünïcödé"])
    assert uni[0]["label"] in ("savory", "sweet") and uni[0]["num_tokens"] > 0
    assert sum(uni[1]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_input_forms(classifier: Predictor) -> None:
    expected = classifier.predict(["honey cake", "salt"])
    assert classifier.predict(pd.DataFrame({"text": ["honey cake", "salt"]})) == expected
    assert classifier.predict(pd.DataFrame({"review": ["honey cake", "salt"]})) == expected
    assert classifier.predict(pd.Series(["honey cake", "salt"])) == expected
    assert classifier.predict("honey cake") == expected[:1]
    with pytest.raises(ValueError, match="'text' column"):
        classifier.predict(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(TypeError, match="input 1 is int"):
        classifier.predict(["ok", 3])


def test_tagging_gives_one_tag_per_word(data: ToyTextData) -> None:
    torch.manual_seed(0)
    task = ToyTagger(vocab_size=data.vocab_size, tag_names=["O", "FOOD", "X"]).eval()
    model = Predictor(task, "tagging", data.tokenizer, {"max_length": 5})
    text = "the chef added   honey, crème"
    out = model.predict([text, ""])
    enc = data.tokenizer.encode(text)
    assert out[0]["words"] == ["the", "chef", "added", "honey", ","]
    with torch.no_grad():
        ids = torch.tensor([enc.ids[:5]])
        expect = task(ids, torch.tensor([5])).argmax(-1)[0].tolist()
    assert out[0]["tags"] == [["O", "FOOD", "X"][t] for t in expect]
    assert out[0]["truncated"] is True
    assert out[1] == {"words": [], "tags": [], "truncated": False}


class ListTagger(ToyTagger):
    """The other documented output form: ``{"tags": [[tag id per real token] per sequence]}``."""

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int = 0) -> dict:  # type: ignore[override]
        best = self(batch["input_ids"], batch["lengths"]).argmax(-1).tolist()
        return {"tags": [row[: int(n)] for row, n in zip(best, batch["lengths"], strict=True)]}


def test_tagging_accepts_tag_ids_as_lists(data: ToyTextData) -> None:
    torch.manual_seed(0)
    logits_form = ToyTagger(vocab_size=data.vocab_size, tag_names=["O", "FOOD", "X"]).eval()
    list_form = ListTagger(vocab_size=data.vocab_size, tag_names=["O", "FOOD", "X"]).eval()
    list_form.load_state_dict(logits_form.state_dict())
    texts = ["the chef added honey", "salt", ""]
    assert Predictor(list_form, "tagging", data.tokenizer).predict(texts) == Predictor(
        logits_form, "tagging", data.tokenizer
    ).predict(texts)


def test_language_model_continues_a_prompt(data: ToyTextData) -> None:
    torch.manual_seed(0)
    task = ToyLanguageModel(vocab_size=data.vocab_size).eval()
    model = Predictor(task, "language_model", data.tokenizer, {"max_length": 4, "data": {"bos_id": 2}})
    prompt = "the chef added some honey and"
    out = model.predict([prompt], max_new_tokens=5, seed=3)[0]
    ids = data.tokenizer.encode(prompt).ids[-4:]
    with torch.no_grad():
        expect = task.generate(ids, max_new_tokens=5, seed=3)
    assert out == {"prompt": prompt, "continuation": data.tokenizer.decode(expect), "truncated": True}
    assert len(expect) == 5
    # the same seed gives the same continuation; an empty prompt starts from BOS
    assert model.predict([prompt], max_new_tokens=5, seed=3)[0] == out
    steps = task.steps
    assert model.predict([""], max_new_tokens=3)[0]["prompt"] == ""
    assert task.steps == steps + 3
    with pytest.raises(TypeError, match="unknown generation options"):
        model.predict(["x"], max_tokens=3)


def test_forecasting_returns_horizon_steps_in_original_units() -> None:
    torch.manual_seed(0)
    task = ToyForecaster(
        num_features=2, num_targets=1, horizon=3, target_mean=[10.0], target_std=[2.0]
    ).eval()
    data = {"target_columns": ["load"], "feature_mean": [1.0, -1.0], "feature_std": [2.0, 4.0]}
    model = Predictor(task, "forecasting", None, {"data": data})
    window = pd.DataFrame({"load": np.linspace(0, 1, 12), "temp": np.cos(np.arange(12))})
    out = model.predict(window)
    # raw windows are standardised with the data module's train statistics, forecasts come back in units
    standard = (window.to_numpy() - [1.0, -1.0]) / [2.0, 4.0]
    with torch.no_grad():
        expect = task(torch.tensor(standard, dtype=torch.float32)[None])[0, :, 0] * 2.0 + 10.0
    assert [o["step"] for o in out] == [1, 2, 3]
    np.testing.assert_allclose([o["load"] for o in out], expect.numpy(), atol=1e-5)
    assert model.predict(window.to_numpy()) == out
    assert model.predict([]) == [] and model.predict(window.iloc[:0]) == []
    with pytest.raises(ValueError, match="x 2 features"):
        model.predict(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((5, 2), np.nan))


def test_rebuild_from_checkpoint_through_the_concrete_class(tmp_path, data: ToyTextData) -> None:
    torch.manual_seed(0)
    task = ToyClassifier(vocab_size=data.vocab_size, label_names=data.label_names).eval()
    ckpt = tmp_path / "m.ckpt"
    state = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    torch.save({**state, "pytorch-lightning_version": lightning.__version__}, ckpt)
    info = {"task_class": class_path(task), "kind": "classification"}
    model = Predictor.from_files(ckpt, info, tokenizer=data.tokenizer_path)
    direct = Predictor(task, "classification", data.tokenizer, info)
    assert model.predict(SWEET + SAVORY) == direct.predict(SWEET + SAVORY)
    with pytest.raises(ImportError, match="no_such_module"):
        Predictor.from_files(ckpt, {"task_class": "no_such_module.Task"}, tokenizer=data.tokenizer_path)
    with pytest.raises(ValueError, match="needs its tokenizer"):
        Predictor(task, "classification", None, info)


def test_as_texts_rejects_what_is_not_text() -> None:
    assert as_texts(np.array(["a", "b"])) == ["a", "b"]
    with pytest.raises(TypeError, match="list of strings"):
        as_texts(42)
