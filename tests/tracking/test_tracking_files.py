"""Files the zoo loads: checkpoints read weights-only, clear errors for bad files, models logged from code.

A crafted checkpoint here really runs code when unpickled without ``weights_only`` (each such test shows
it), and the zoo must refuse it even with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import lightning
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from tracking_support import child_env, free_port, stop_process_group, wait_http
from tracking_toys import (
    SAVORY,
    SWEET,
    ToyClassifier,
    ToyForecaster,
    ToyLanguageModel,
    ToyTagger,
    ToyTextData,
    word_tokenizer,
)

from zoo import load_model
from zoo.checkpoint import read_checkpoint
from zoo.errors import CheckpointError
from zoo.tracking import log_pyfunc_model
from zoo.tracking.load import using_tracking_uri
from zoo.tracking.predict import PredictInputError, Predictor, class_path, task_kind

TEXTS = ["the chef added honey", "salt and pepper"]


class RunsCode:
    """Unpickling this calls ``os.system``: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def crafted_checkpoint(path: Path, marker: Path, like: Path | None = None) -> Path:
    """A checkpoint that creates ``marker`` when unpickled; with ``like``, otherwise a copy of that one."""
    state = torch.load(like, weights_only=True) if like is not None else {"state_dict": {}}
    state["hyper_parameters"] = {**state.get("hyper_parameters", {}), "payload": RunsCode(marker)}
    torch.save(state, path)
    return path


def assert_really_runs_code(path: Path, marker: Path) -> None:
    """The crafted file is not a dud: unpickled without weights_only, it creates the marker."""
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


def save_checkpoint(task: lightning.LightningModule, path: Path) -> Path:
    state = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A toy classifier, its data and its checkpoint."""
    root = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    data = ToyTextData()
    task = ToyClassifier(vocab_size=data.vocab_size, label_names=data.label_names).eval()
    return {"data": data, "task": task, "ckpt": save_checkpoint(task, root / "model.ckpt"), "root": root}


@pytest.fixture(scope="module")
def logged(trained: dict[str, Any]) -> dict[str, Any]:
    """The toy classifier logged as a pyfunc model to a SQLite store, and its local model directory."""
    root, task = trained["root"], trained["task"]
    info = {"task_class": class_path(task), "kind": task_kind(task)}
    # in root: a SQLite store keeps artifacts under ./mlruns of the working directory
    with pytest.MonkeyPatch.context() as patch, using_tracking_uri(f"sqlite:///{root}/mlflow.db"):
        patch.chdir(root)
        with mlflow.start_run():
            tokenizer = trained["data"].tokenizer
            uri = str(log_pyfunc_model(trained["ckpt"], info, tokenizer, None, TEXTS).model_uri)
            model_dir = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(root / "downloaded")))
    return {**trained, "dir": model_dir}


def copy_model(trained: dict[str, Any], tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained["dir"], tmp_path / "model"))


def artifact(model_dir: Path, suffix: str) -> Path:
    (found,) = [p for p in (model_dir / "artifacts").rglob(f"*{suffix}")]
    return found


# -- models from code ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_logged_model_is_code_not_a_pickle(logged: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = logged["dir"]
    assert not list(model_dir.rglob("*.pkl")), sorted(p.name for p in model_dir.rglob("*"))
    assert (model_dir / "model_text.py").is_file()
    assert "model_code_path" in (model_dir / "MLmodel").read_text()
    # MLflow refuses every pickled model with this set; the zoo's loads, since nothing is unpickled
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    loaded = load_model(str(model_dir))
    want = Predictor(logged["task"], "classification", logged["data"].tokenizer).predict(TEXTS)
    got = loaded.predict(TEXTS)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(list(g["probabilities"].values()), list(w["probabilities"].values()))


# -- weights only --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_crafted_checkpoint_in_a_model_directory_runs_no_code(
    logged: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = copy_model(logged, tmp_path)
    marker = tmp_path / "code-ran"
    target = artifact(model_dir, ".ckpt")
    crafted_checkpoint(target, marker, like=logged["ckpt"])
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's escape hatch must not apply
    with pytest.raises(CheckpointError, match=rf"{target.name} holds Python objects that would run code"):
        load_model(str(model_dir))
    assert not marker.exists()
    assert_really_runs_code(target, marker)


def test_crafted_checkpoint_is_refused_by_from_files(trained: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    target = crafted_checkpoint(tmp_path / "crafted.ckpt", marker, like=trained["ckpt"])
    info = {"task_class": class_path(trained["task"]), "kind": "classification"}
    with pytest.raises(CheckpointError, match=r"GLOBAL posix\.system"):
        Predictor.from_files(target, info, trained["data"].tokenizer_path)
    assert not marker.exists()
    assert_really_runs_code(target, marker)


def _bad_file(kind: str, folder: Path, good: Path) -> Path:
    path = folder / f"{kind}.ckpt"
    if kind == "empty":
        path.touch()
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("epoch: 3\nthis is not a checkpoint\n")
    elif kind == "foreign zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    elif kind == "bare state_dict":
        torch.save(torch.load(good, weights_only=True)["state_dict"], path)
    elif kind == "no hyperparameters":
        state = torch.load(good, weights_only=True)
        torch.save({k: v for k, v in state.items() if k != "hyper_parameters"}, path)
    elif kind == "no lightning version":
        state = torch.load(good, weights_only=True)
        torch.save({k: v for k, v in state.items() if k != "pytorch-lightning_version"}, path)
    return path


BAD_FILES = {
    "empty": "is empty \\(0 bytes\\)",
    "truncated": "is truncated or corrupt",
    "text": "is not a PyTorch checkpoint",
    "foreign zip": "is a zip archive but not a PyTorch checkpoint",
    "bare state_dict": "is a bare state_dict .*no 'state_dict'",
    "no hyperparameters": "has no 'hyper_parameters'",
    "no lightning version": "has no 'pytorch-lightning_version', so it was not written by Lightning",
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_checkpoint_is_a_clear_error_naming_the_file(
    kind: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    path = _bad_file(kind, tmp_path, trained["ckpt"])
    info = {"task_class": class_path(trained["task"]), "kind": "classification"}
    with pytest.raises(CheckpointError, match=BAD_FILES[kind]) as caught:
        Predictor.from_files(path, info, trained["data"].tokenizer_path)
    assert str(path) in str(caught.value)


@pytest.mark.slow
def test_an_empty_checkpoint_in_a_model_directory_names_the_file(
    logged: dict[str, Any], tmp_path: Path
) -> None:
    model_dir = copy_model(logged, tmp_path)
    target = artifact(model_dir, ".ckpt")
    target.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{target} is empty"):
        load_model(str(model_dir))


def test_read_checkpoint_returns_a_good_checkpoint(trained: dict[str, Any]) -> None:
    state = read_checkpoint(trained["ckpt"], need_hparams=True)
    assert torch.equal(state["state_dict"]["head.weight"], trained["task"].head.weight)


# -- the zoo command -----------------------------------------------------------------------------------
TOY_CLI = ["--model", "tracking_toys.ToyClassifier", "--data", "tracking_toys.ToyTextData"]


@pytest.mark.slow
def test_the_command_refuses_a_crafted_checkpoint_before_anything_runs(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    target = crafted_checkpoint(tmp_path / "crafted.ckpt", marker, like=trained["ckpt"])
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "test", *TOY_CLI, "--ckpt_path", str(target)],
        cwd=tmp_path,
        env=child_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"checkpoint {target} holds Python objects that would run code" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "mlflow.db").exists()  # stopped before the logger opened a run
    assert_really_runs_code(target, marker)


@pytest.mark.parametrize(
    ("subcommand", "kind"),
    [("fit", "empty"), ("validate", "truncated"), ("predict", "bare state_dict"), ("fit", "crafted")],
)
def test_the_command_names_a_bad_checkpoint_and_exits_2(
    subcommand: str,
    kind: str,
    trained: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "code-ran"
    if kind == "crafted":
        path = crafted_checkpoint(tmp_path / "crafted.ckpt", marker, like=trained["ckpt"])
    else:
        path = _bad_file(kind, tmp_path, trained["ckpt"])
    assert main([subcommand, *TOY_CLI, "--ckpt_path", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and str(path) in err
    assert re.search(BAD_FILES.get(kind, "would run code"), err), err
    assert not marker.exists() and not (tmp_path / "mlflow.db").exists()


def test_the_command_refuses_weights_only_false(
    trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.cli import main

    args = ["test", *TOY_CLI, "--ckpt_path", str(trained["ckpt"]), "--weights_only", "false"]
    assert main(args) == 2
    assert "weights_only=True only" in capsys.readouterr().err


# -- tokenizer and vocabulary ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_tokenizer_of_another_vocabulary_is_refused_at_load(logged: dict[str, Any], tmp_path: Path) -> None:
    model_dir = copy_model(logged, tmp_path)
    target = artifact(model_dir, "tokenizer.json")
    other = word_tokenizer(["a whole other corpus with many more words than the toy one", *SWEET, *SAVORY])
    other.save(str(target))
    size, other_size = logged["data"].vocab_size, other.get_vocab_size()
    assert other_size != size
    with pytest.raises(
        CheckpointError, match=rf"{target} has {other_size} token ids .* vocabulary of {size}"
    ):
        load_model(str(model_dir))
    # the same check guards a predictor built in memory
    with pytest.raises(CheckpointError, match=f"has {other_size} token ids but the task embeds .* {size}"):
        Predictor(logged["task"], "classification", other)


# -- any Unicode ---------------------------------------------------------------------------------------
def test_lone_surrogates_are_predicted_as_replacement_characters(trained: dict[str, Any]) -> None:
    data, task = trained["data"], trained["task"]
    classifier = Predictor(task, "classification", data.tokenizer)
    lone = ["\ud800", "honey \udfff cake", "x\ud83c"]
    replaced = ["\ufffd", "honey \ufffd cake", "x\ufffd"]
    assert classifier.predict(lone) == classifier.predict(replaced)
    # a surrogate pair spelled as two code points is the character it encodes
    assert classifier.predict(["\ud83c\udf6e honey"]) == classifier.predict(["🍮 honey"])
    tagger = Predictor(ToyTagger(vocab_size=data.vocab_size).eval(), "tagging", data.tokenizer)
    words = tagger.predict(["honey \ud800 cake"])[0]["words"]
    assert "".join(words).replace("\ufffd", "") == "honeycake" and "\ud800" not in "".join(words)
    lm = Predictor(ToyLanguageModel(vocab_size=data.vocab_size).eval(), "language_model", data.tokenizer)
    assert lm.predict(["the \udc00"], max_new_tokens=2)[0]["prompt"] == "the \ufffd"


@pytest.mark.slow
def test_the_pyfunc_model_predicts_a_lone_surrogate(logged: dict[str, Any]) -> None:
    pyfunc = mlflow.pyfunc.load_model(str(logged["dir"]))
    out = pyfunc.predict(["\ud800", "honey"])
    assert out[0]["label"] in logged["data"].label_names and out[1]["label"] in logged["data"].label_names


def test_from_files_names_both_files_of_a_vocabulary_mismatch(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    other = word_tokenizer(["only", "four", "words", "here"])
    path = tmp_path / "tokenizer.json"
    other.save(str(path))
    info = {"task_class": class_path(trained["task"]), "kind": "classification"}
    size = trained["data"].vocab_size
    with pytest.raises(CheckpointError) as caught:
        Predictor.from_files(trained["ckpt"], info, path)
    message = str(caught.value)
    assert f"tokenizer {path} has {other.get_vocab_size()} token ids" in message
    assert f"checkpoint {trained['ckpt']} embeds a vocabulary of {size}" in message


# -- zoo serve -----------------------------------------------------------------------------------------
def _request(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """POST /invocations with exactly these headers (urllib would add a Content-Type of its own)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest("POST", "/invocations")
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_serve_answers_a_missing_content_type_and_a_lone_surrogate(
    logged: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo.tracking import start_server

    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])  # the server imports tracking_toys
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = start_server(str(logged["dir"]), port=port, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=90, log=log)
        json_type = {"Content-Type": "application/json"}
        status, kind, body = _request(port, b'{"inputs": ["honey"]}', {})
        assert (status, kind) == (415, "text/plain; charset=utf-8")
        assert b"needs a Content-Type header: application/json" in body
        # JSON's "\ud800" is a lone surrogate in Python: predicted like U+FFFD, no error, no trace
        status, _, body = _request(port, b'{"inputs": ["\\ud800", "honey \\udfff"]}', json_type)
        assert status == 200, body
        want = Predictor(logged["task"], "classification", logged["data"].tokenizer).predict(
            ["\ufffd", "honey \ufffd"]
        )
        got = json.loads(body)["predictions"]
        assert [g["label"] for g in got] == [w["label"] for w in want]
        # input MLflow names itself is a 400 with its message and no stack trace
        status, _, body = _request(port, b'{"inputs": [5]}', json_type)
        assert status == 400 and b"Expected type str" in body and b"stack_trace" not in body
        assert _request(port, b'{"inputs": ["cake"]}', json_type)[0] == 200  # still serving
    finally:
        stop_process_group(proc)


def test_input_the_predictor_names_is_an_invalid_parameter_for_mlflow(tmp_path: Path) -> None:
    """What the scoring server answers with 400 and the message alone (not a 400 with a stack trace)."""
    from mlflow.exceptions import MlflowException

    from zoo.tracking.pyfunc import SeriesPythonModel

    task = ToyForecaster(num_features=2, horizon=2).eval()
    ckpt = save_checkpoint(task, tmp_path / "forecaster.ckpt")
    info = {"task_class": class_path(task), "kind": "forecasting"}
    model = SeriesPythonModel()
    model.load_context(type("Context", (), {"artifacts": {"checkpoint": str(ckpt), "zoo_model": info}})())
    window = pd.DataFrame({"a": [1.0, float("nan")], "b": [0.0, 1.0]})
    with pytest.raises(MlflowException, match="must not contain NaN") as caught:
        model.predict(None, window)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(PredictInputError, match="must not contain NaN"):
        model.model.predict(window)
