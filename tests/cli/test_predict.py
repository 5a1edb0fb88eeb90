"""``zoo predict`` through the real entry point, for the four tasks, in its three forms.

One tiny model per task is trained once (``zoo fit`` subprocesses, run side by side). Each task is then
predicted with ``zoo predict MODEL "text" ...`` (or ``-`` on stdin), ``zoo predict MODEL --input FILE
--output FILE`` and ``zoo predict -c recipe --ckpt_path best --data.predict_files FILE``; the three give
the same rows, and the rows match an in-process ``zoo.Predictor`` on the same checkpoint.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cli_support import Result, zoo_env

pytestmark = pytest.mark.slow

TEXTS = ["the chef added honey and sugar", "salt, pepper", "garlic"]
SWEET, SAVORY = ["honey", "sugar", "cake", "jam"], ["salt", "pepper", "garlic", "onion"]

RECIPE = """\
seed_everything: 0
trainer:
  max_epochs: 2
  default_root_dir: runs
  enable_progress_bar: false
  enable_model_summary: false
  logger: {logger}
model:
  class_path: {model}
  init_args:
    encoder:
      cell: gru
      hidden_size: 8
{model_args}
data:
  class_path: {data}
  init_args:
    batch_size: 8
{data_args}
checkpoint:
  dirpath: checkpoints
{tracking}
"""

MLFLOW_LOGGER = """
    class_path: zoo.tracking.ZooMLFlowLogger
    init_args:
      experiment_name: predict"""
TRACKING = """tracking:
  log_model: true
  registered_model_name: tiny-classifier
  log_plots: false"""


def _classification(folder: Path) -> dict[str, str]:
    rows = [
        f'"the chef added {w}, then {w}",{label}'
        for label, words in (("sweet", SWEET), ("savory", SAVORY))
        for w in words * 5
    ]
    (folder / "train.csv").write_text("sentence,label\n" + "\n".join(rows) + "\n")
    return {
        "model": "zoo.tasks.SequenceClassifier",
        "model_args": "    embedding_dim: 8",
        "data": "zoo.data.TextClassificationData",
        "data_args": "    path: csv\n    data_files: {train: train.csv, validation: train.csv}\n"
        "    text_column: sentence\n    cache_dir: cache",
        "logger": MLFLOW_LOGGER,
        "tracking": TRACKING,
    }


def _tagging(folder: Path) -> dict[str, str]:
    rows = []
    for w in SWEET + SAVORY:
        tokens = ["the", "chef", "added", w]
        rows.append({"tokens": tokens, "tags": ["DET", "NOUN", "VERB", "NOUN"]})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 3))
    return {
        "model": "zoo.tasks.TokenTagger",
        "model_args": "    embedding_dim: 8",
        "data": "zoo.data.TokenTaggingData",
        "data_args": "    path: json\n    data_files: {train: train.jsonl, validation: train.jsonl}\n"
        "    cache_dir: cache",
        "logger": "false",
        "tracking": "",
    }


def _language_model(folder: Path) -> dict[str, str]:
    lines = [f"the chef added {w} and {v}" for w in SWEET for v in SAVORY]
    (folder / "train.txt").write_text("\n".join(lines * 3) + "\n")
    return {
        "model": "zoo.tasks.LanguageModel",
        "model_args": "    embedding_dim: 8",
        "data": "zoo.data.LanguageModelingData",
        "data_args": "    path: text\n    data_files: {train: train.txt, validation: train.txt}\n"
        "    seq_len: 8\n    cache_dir: cache",
        "logger": "false",
        "tracking": "",
    }


def _forecasting(folder: Path) -> dict[str, str]:
    rows = [f"{math.sin(t / 4):.4f},{math.cos(t / 4):.4f}" for t in range(120)]
    (folder / "series.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    return {
        "model": "zoo.tasks.Forecaster",
        "model_args": "",
        "data": "zoo.data.TimeSeriesData",
        "data_args": "    path: csv\n    data_files: series.csv\n    input_length: 6\n    horizon: 2",
        "logger": "false",
        "tracking": "",
    }


TASKS = {
    "classification": _classification,
    "tagging": _tagging,
    "language_model": _language_model,
    "forecasting": _forecasting,
}


def start(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.Popen[str]:
    """Start ``python -m zoo ARGS`` (as a user runs ``zoo ARGS``) with the folder's own MLflow store."""
    env = zoo_env()
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd / 'mlflow.db'}"
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], stdin: str | None = None, timeout: float = 300) -> Result:
    out, err = proc.communicate(stdin, timeout=timeout)
    return Result(proc.returncode, out, err)


def run_all(*commands: tuple[Sequence[str], Path, str | None]) -> list[Result]:
    """Run several ``zoo`` commands side by side; each succeeds."""
    procs = [(start(*args, cwd=cwd, stdin=stdin), stdin) for args, cwd, stdin in commands]
    results = [finish(proc, stdin) for proc, stdin in procs]
    for (args, _, _), result in zip(commands, results, strict=True):
        assert result.returncode == 0, f"zoo {' '.join(args)}:\n{result.stderr[-3000:]}"
    return results


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder per task holding its data, recipe, fitted checkpoints (and the classifier's MLflow store)."""
    root = tmp_path_factory.mktemp("predict")
    folders = {}
    for task, write in TASKS.items():
        folder = root / task
        folder.mkdir()
        (folder / "recipe.yaml").write_text(RECIPE.format(**write(folder)))
        folders[task] = folder
    run_all(*[(["fit", "-c", "recipe.yaml"], folder, None) for folder in folders.values()])
    return folders


def in_process(folder: Path, inputs: Sequence[Any], **options: Any) -> list[dict[str, Any]]:
    from zoo import Predictor

    return Predictor.from_checkpoint(folder / "checkpoints").predict_rows(list(inputs), **options)


def assert_same_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Equal rows, floats to 1e-6 (JSON round trip of float32 values)."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.keys() == e.keys()
        for key in a:
            if isinstance(a[key], dict):
                assert a[key] == pytest.approx(e[key], abs=1e-6)
            elif isinstance(a[key], list) and a[key] and isinstance(a[key][0], dict):
                assert [list(s) for s in a[key]] == [list(s) for s in e[key]]
                for sa, se in zip(a[key], e[key], strict=True):
                    assert sa == pytest.approx(se, abs=1e-6)
            else:
                assert a[key] == e[key]


def test_classification_in_three_forms(trained: dict[str, Path]) -> None:
    folder = trained["classification"]
    (folder / "in.txt").write_text("\n".join(TEXTS) + "\n\n")
    # a csv whose text holds commas and quotes, beside another column
    (folder / "in.csv").write_text(
        "id,sentence\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS)) + '3,""\n'
    )
    args_form, file_form, recipe_form = run_all(
        (["predict", "models:/tiny-classifier@champion", *TEXTS, ""], folder, None),
        (
            ["predict", "checkpoints", "--input", "in.csv", "--column", "sentence", "--output", "p.jsonl"],
            folder,
            None,
        ),
        (
            ["predict", "-c", "recipe.yaml", "--ckpt_path", "best", "--data.predict_files", "in.txt",
             "--prediction.output", "lightning.jsonl"],
            folder,
            None,
        ),
    )  # fmt: skip
    expected = in_process(folder, [*TEXTS, ""])
    rows = json_lines(args_form.stdout)
    assert_same_rows(rows, expected)
    assert_same_rows(json_lines((folder / "p.jsonl").read_text()), expected)
    assert_same_rows(json_lines((folder / "lightning.jsonl").read_text()), expected)
    for row in rows[:3]:
        assert set(row["probabilities"]) == {"savory", "sweet"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    assert rows[3] == {"label": None, "probabilities": {}, "num_tokens": 0, "truncated": False}
    assert "wrote 4 predictions to p.jsonl" in file_form.stderr
    assert "predicting" in file_form.stderr  # the progress bar
    assert "Predictions: 4 rows in lightning.jsonl" in recipe_form.stdout


def test_tagging_in_three_forms(trained: dict[str, Path]) -> None:
    folder = trained["tagging"]
    (folder / "in.jsonl").write_text("".join(json.dumps({"text": t, "n": 1}) + "\n" for t in TEXTS))
    (folder / "in.txt").write_text("\n".join(TEXTS) + "\n")
    stdin_form, _, _ = run_all(
        (["predict", "checkpoints", "-"], folder, "\n".join(TEXTS) + "\n"),
        (["predict", "checkpoints/last.ckpt", "--input", "in.jsonl", "--output", "p.jsonl"], folder, None),
        (
            ["predict", "-c", "recipe.yaml", "--ckpt_path", "best", "--data.predict_files", "in.txt",
             "--prediction.output", "lightning.jsonl"],
            folder,
            None,
        ),
    )  # fmt: skip
    expected = in_process(folder, TEXTS)
    rows = json_lines(stdin_form.stdout)
    assert_same_rows(rows, expected)
    assert_same_rows(json_lines((folder / "lightning.jsonl").read_text()), expected)
    # last.ckpt is another checkpoint of the same fit: the same words, tags from the same tag set
    last = json_lines((folder / "p.jsonl").read_text())
    assert [r["words"] for r in last] == [r["words"] for r in rows]
    assert rows[0]["words"] == ["the", "chef", "added", "honey", "and", "sugar"]
    for row in rows + last:
        assert len(row["tags"]) == len(row["words"])
        assert set(row["tags"]) <= {"DET", "NOUN", "VERB"}


def test_language_model_in_three_forms(trained: dict[str, Path]) -> None:
    folder = trained["language_model"]
    prompts = ["the chef added", "honey and"]
    (folder / "in.txt").write_text("\n".join(prompts) + "\n")
    options = ["--max-new-tokens", "3", "--temperature", "0.7", "--top-k", "4", "--seed", "5"]
    args_form, _, _ = run_all(
        (["predict", "checkpoints", *prompts, *options], folder, None),
        (["predict", "checkpoints", "--input", "in.txt", "--output", "p.jsonl", *options], folder, None),
        (
            ["predict", "-c", "recipe.yaml", "--ckpt_path", "best", "--data.predict_files", "in.txt",
             "--prediction.output", "lightning.jsonl", "--prediction.max_new_tokens", "3",
             "--prediction.temperature", "0.7", "--prediction.top_k", "4", "--prediction.seed", "5"],
            folder,
            None,
        ),
    )  # fmt: skip
    expected = in_process(folder, prompts, max_new_tokens=3, temperature=0.7, top_k=4, seed=5)
    rows = json_lines(args_form.stdout)
    assert rows == expected
    assert json_lines((folder / "p.jsonl").read_text()) == expected
    assert json_lines((folder / "lightning.jsonl").read_text()) == expected
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "checkpoints" / "tokenizer.json"))
    longer = in_process(folder, prompts, max_new_tokens=8, temperature=0.7, top_k=4, seed=5)
    for row, long, prompt in zip(rows, longer, prompts, strict=True):
        assert row["prompt"] == prompt
        assert 1 <= len(tokenizer.encode(row["continuation"], add_special_tokens=False).ids) <= 3
        # the same seed draws the same first tokens: a longer continuation extends the shorter one
        assert long["continuation"].startswith(row["continuation"])


def test_forecasting_in_three_forms(trained: dict[str, Path]) -> None:
    folder = trained["forecasting"]
    window = [[math.sin(t / 4), math.cos(t / 4)] for t in range(200, 206)]
    (folder / "window.csv").write_text("b,a\n" + "".join(f"{b},{a}\n" for a, b in window))  # read by name
    (folder / "windows.jsonl").write_text(json.dumps(window) + "\n" + json.dumps(window[::-1]) + "\n")
    args_form, csv_form, _, _ = run_all(
        (["predict", "checkpoints", json.dumps(window)], folder, None),
        (["predict", "checkpoints", "--input", "window.csv"], folder, None),
        (["predict", "checkpoints", "--input", "windows.jsonl", "--output", "p.jsonl"], folder, None),
        (
            ["predict", "-c", "recipe.yaml", "--ckpt_path", "best", "--data.predict_files", "window.csv",
             "--prediction.output", "lightning.jsonl"],
            folder,
            None,
        ),
    )  # fmt: skip
    expected = in_process(folder, [window, window[::-1]])
    assert_same_rows(json_lines(args_form.stdout), expected[:1])
    assert_same_rows(json_lines(csv_form.stdout), expected[:1])
    assert_same_rows(json_lines((folder / "p.jsonl").read_text()), expected)
    assert_same_rows(json_lines((folder / "lightning.jsonl").read_text()), expected[:1])
    steps = expected[0]["forecast"]
    assert [s["step"] for s in steps] == [1, 2] and set(steps[0]) == {"step", "a", "b"}
    assert expected[0] != expected[1], "the forecast depends on the window"


def peak_rss_mb(*args: str, cwd: Path) -> float:
    """Peak resident memory (MB) of ``python -m zoo ARGS``, read in a fresh parent that runs only it."""
    probe = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def test_file_predictions_stream_in_flat_memory(trained: dict[str, Path]) -> None:
    """Ten times the input (20k -> 200k lines) leaves the peak memory where it was: the file is read and
    written batch by batch, never held."""
    folder = trained["classification"]
    words = SWEET + SAVORY + ["the", "chef", "added"]
    lines = [" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(5)) for i in range(200_000)]
    (folder / "small.txt").write_text("\n".join(lines[:20_000]) + "\n")
    (folder / "large.txt").write_text("\n".join(lines) + "\n")
    peaks = {}
    for name in ("small", "large"):
        peaks[name] = peak_rss_mb(
            "predict", "checkpoints", "--input", f"{name}.txt", "--output", f"{name}.jsonl",
            "--batch-size", "256", cwd=folder,
        )  # fmt: skip
    with (folder / "large.jsonl").open() as handle:
        assert sum(1 for _ in handle) == 200_000
    # holding 200k rows (or lines) would add well over 10 MB; measured here: +0.1 MB at ~625 MB
    assert peaks["large"] - peaks["small"] < 10, peaks


def error_line(result: Result) -> str:
    """The ``zoo: error:`` line, checked to be the only one and to come without a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("zoo: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def test_bad_predict_input_exits_2_naming_the_fix(
    trained: dict[str, Path], zoo_main: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = trained["classification"]
    ckpts = str(folder / "checkpoints")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")

    missing = zoo_main("predict", ckpts, "--input", "nowhere.txt")
    assert missing.returncode == 2
    assert error_line(missing) == (
        "zoo: error: input file nowhere.txt does not exist. Give a .txt, .csv or .jsonl file to predict on."
    )

    (tmp_path / "in.csv").write_text("id,sentence\n1,honey\n")
    column = zoo_main("predict", ckpts, "--input", "in.csv", "--output", "out.jsonl")
    assert column.returncode == 2
    assert error_line(column) == (
        "zoo: error: in.csv has no column 'text'; its columns are ['id', 'sentence']. Pass --column with "
        "one of them."
    )

    uri = zoo_main("predict", "models:/no-such-model@champion", "honey")
    assert uri.returncode == 2
    assert error_line(uri).startswith(
        f"zoo: error: model models:/no-such-model@champion could not be loaded from sqlite:///{folder}"
    )

    (tmp_path / "noise.ckpt").write_bytes(b"not a checkpoint at all")
    foreign = zoo_main("predict", "noise.ckpt", "honey")
    assert foreign.returncode == 2
    assert error_line(foreign).startswith("zoo: error: noise.ckpt is not a PyTorch checkpoint")

    # a real Lightning checkpoint, copied away from the files zoo fit writes beside it
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "model.ckpt").write_bytes((folder / "checkpoints" / "last.ckpt").read_bytes())
    bare = zoo_main("predict", "bare/model.ckpt", "honey")
    assert bare.returncode == 2
    assert error_line(bare).startswith(
        "zoo: error: bare has no zoo_model.json beside checkpoint model.ckpt, so it is not a zoo checkpoint "
        "folder"
    )

    typo = zoo_main("predict", "checkpoint", "honey")
    assert typo.returncode == 2
    assert error_line(typo).startswith(
        "zoo: error: model 'checkpoint' is not a file, a folder or a model URI."
    )

    options = zoo_main("predict", ckpts, "honey", "--temperature", "0.5")
    assert options.returncode == 2
    assert error_line(options) == (
        "zoo: error: --temperature apply to language models only; this model is a classification model."
    )


def test_recipe_form_without_predict_files_exits_2(trained: dict[str, Path]) -> None:
    folder = trained["tagging"]
    recipe = ["predict", "-c", "recipe.yaml", "--ckpt_path", "best"]
    procs = [start(*recipe, cwd=folder), start(*recipe, "--data.predict_files", "no.txt", cwd=folder)]
    nothing, missing = [finish(proc) for proc in procs]
    assert nothing.returncode == 2
    assert error_line(nothing).startswith("zoo: error: nothing to predict: pass --data.predict_files FILE")
    assert missing.returncode == 2
    assert error_line(missing).startswith("zoo: error: input file no.txt does not exist.")
