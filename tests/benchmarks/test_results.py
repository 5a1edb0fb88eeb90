"""benchmarks/results.py renders docs/results.md byte for byte from JSON summaries, and exports real runs
that benchmarks/run_queue.sh trained, tested and resumed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "results.py"
QUEUE = ROOT / "benchmarks" / "run_queue.sh"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("results_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _summary(
    recipe: str, cell: str, monitor: str, test: dict[str, float], curve: list[float]
) -> dict[str, Any]:
    best = min(curve) if monitor.endswith(("ppl", "mae")) else max(curve)
    return {
        "schema": 1,
        "recipe": recipe,
        "cell": cell,
        "parameters": 123456,
        "config": {"trainer.max_epochs": len(curve)},
        "monitor": monitor,
        "mode": "min",
        "test": test,
        "validation": {monitor: best},
        "best_epoch": curve.index(best) + 1,
        "epochs": len(curve),
        "curve": [[i + 1, v] for i, v in enumerate(curve)],
        "wall_time_s": 868.4,
        "machine": "Example CPU, 2 cores; torch 0.0; Linux",
        "git_commit": "0" * 40,
        "command": {"fit": f"zoo fit -c recipes/{recipe}.yaml", "test": f"zoo test -c recipes/{recipe}.yaml"},
        "finished": "2026-01-01T00:00Z",
    }


def _write_fixtures(folder: Path) -> None:
    folder.mkdir()
    fixtures = [
        _summary("lm/ptb-lstm", "lstm", "val_ppl", {"test_ppl": 110.0}, [300.0, 150.0, 118.0]),
        _summary("lm/ptb-gru", "gru", "val_ppl", {"test_ppl": 130.0}, [280.0, 160.0, 135.0]),
        _summary("classify/sst2-gru", "gru", "val_acc", {"test_acc": 0.84}, [0.9, 0.92, 0.91]),
    ]
    sunspots = _summary("forecast/sunspots-gru", "gru", "val_mae", {"test_mae": 15.0}, [30.0, 20.0])
    sunspots["baselines"] = {"last_value": {"test_mae": 18.0}, "seasonal_naive": {"test_mae": 29.2}}
    fixtures.append(sunspots)
    for summary in fixtures:
        name = f"{summary['recipe'].replace('/', '--')}--{summary['cell']}.json"
        (folder / name).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def test_render_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    results = _load()
    folder = tmp_path / "results"
    _write_fixtures(folder)
    markdown = tmp_path / "results.md"
    first = results.render(folder, markdown)
    before = {p: p.read_bytes() for p in first}
    second = results.render(folder, markdown)
    assert second == first and {p: p.read_bytes() for p in second} == before
    assert {p.name for p in first} == {
        "results.md",
        "lm-val_ppl.png",
        "classify-val_acc.png",
        "forecast-val_mae.png",
    }
    assert b"Software" not in before[folder / "lm-val_ppl.png"]  # no matplotlib version in the bytes

    text = before[markdown].decode()
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| `")}
    # the anchor's verdict comes from the numbers: 110 <= 114.5, 130 > 114.5, 0.84 < 0.85
    assert "ppl 110 | ppl 118 | <= 114.5 (met): Zaremba et al. 2014" in rows["| `lm/ptb-lstm`"]
    assert "(not met)" in rows["| `lm/ptb-gru`"] and "(not met)" in rows["| `classify/sst2-gru`"]
    assert "| 2 / 3 | 14 min 28 s |" in rows["| `classify/sst2-gru`"]
    assert "mae below last value 18, seasonal naive 29.2 (met)" in rows["| `forecast/sunspots-gru`"]
    assert "`zoo fit -c recipes/lm/ptb-gru.yaml`" in rows["| `lm/ptb-gru`"]
    not_run = next(line for line in text.splitlines() if line.startswith("Not yet run"))
    assert "`lm/ptb-char`" in not_run and "`lm/ptb-lstm`" not in not_run
    assert "![lm-val_ppl](results/lm-val_ppl.png)" in text


def test_naive_baselines_of_a_ramp(tmp_path: Path) -> None:
    csv = tmp_path / "ramp.csv"
    csv.write_text("y\n" + "\n".join(str(t) for t in range(100)) + "\n")
    init_args = {
        "path": "csv",
        "data_files": str(csv),
        "feature_columns": ["y"],
        "input_length": 20,
        "horizon": 3,
        "validation_fraction": 0.2,
        "test_fraction": 0.2,
    }
    config = {"data": {"class_path": "zoo.data.TimeSeriesData", "init_args": init_args}}
    found = _load().series_baselines(config, season=12)
    # on y = t, repeating y[t-1] misses step k by k + 1 (mean 2 over 3 steps); a season back misses by 12
    assert found["last_value"]["test_mae"] == pytest.approx(2.0)
    assert found["last_value"]["val_rmse"] == pytest.approx(((1 + 4 + 9) / 3) ** 0.5)
    assert found["seasonal_naive"]["test_mae"] == pytest.approx(12.0)
    assert _load().series_baselines(config, season=None).keys() == {"last_value"}
    assert _load().series_baselines({"data": {"class_path": "zoo.data.CopyTaskData"}}, 12) is None


@pytest.mark.slow
def test_queue_trains_tests_resumes_and_exports(tmp_path: Path) -> None:
    results_dir = tmp_path / "runs"
    out = tmp_path / "docs" / "results"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHON": sys.executable,
        "RESULTS_DIR": str(results_dir),
        "EXPORT_TO": str(out),
        "EXTRA_ARGS": f"--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 2 "
        f"--trainer.default_root_dir {tmp_path / 'root'}",
    }

    def queue(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(QUEUE), "sunspots@lstm"], cwd=ROOT, env={**env, **extra}, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip

    first = queue()
    assert first.returncode == 0, first.stdout + first.stderr
    (exported,) = out.glob("*.json")
    one = json.loads(exported.read_text())
    assert exported.name == "forecast--sunspots-gru--lstm.json"
    assert (one["recipe"], one["cell"]) == ("forecast/sunspots-gru", "lstm")
    assert (one["epochs"], one["best_epoch"]) == (1, 1)
    assert one["command"]["fit"].startswith("zoo fit -c recipes/forecast/sunspots-gru.yaml")
    assert "--model.encoder.cell lstm" in one["command"]["fit"]
    assert one["command"]["test"].endswith("--ckpt_path best")
    assert set(one["test"]) == {"test_loss", "test_mae", "test_rmse"}
    assert set(one["validation"]) == {"val_loss", "val_mae", "val_rmse"}
    assert one["parameters"] > 0 and one["wall_time_s"] > 0 and "cores" in one["machine"]
    assert len(one["git_commit"].split("-")[0]) == 40
    assert one["config"]["model.init_args.encoder"]["cell"] == "lstm"
    assert set(one["baselines"]) == {"last_value", "seasonal_naive"}
    assert (tmp_path / "docs" / "results.md").is_file()

    # finished runs are skipped; a run that did not finish continues from last.ckpt in the same MLflow run
    again = queue(EXPORT_TO="")
    assert "finished before, skipped" in again.stdout
    (results_dir / "done" / "sunspots@lstm").unlink()
    resumed = queue(EXPORT_TO="", EXTRA_ARGS=env["EXTRA_ARGS"].replace("max_epochs 1", "max_epochs 2"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming run {one['mlflow_run_id']}" in resumed.stdout
    assert _load().export(f"sqlite:///{results_dir / 'mlflow.db'}", out) == [exported]
    two = json.loads(exported.read_text())
    assert two["mlflow_run_id"] == one["mlflow_run_id"] and two["epochs"] == 2
    assert [epoch for epoch, _ in two["curve"]] == [1, 2]
    assert two["command"]["fit"] == one["command"]["fit"]  # the command that created the run
    assert two["wall_time_s"] > one["wall_time_s"]  # both fits counted


def test_readme_recipes_page_and_recipe_headers_carry_the_measured_numbers() -> None:
    results = _load()
    stale = results.check()
    assert stale == [], f"{stale} disagree with docs/results/: run python benchmarks/results.py render"
    readme = (ROOT / "README.md").read_text()
    for summary in results.load_results(results.RESULTS_DIR):
        if summary["recipe"] == "lm/ptb-lstm" and summary["cell"] == "lstm":
            ppl = results._num(summary["test"]["test_ppl"])
            assert f"ppl {ppl};" in readme
            header = (ROOT / "zoo" / "recipes" / "lm" / "ptb-lstm.yaml").read_text()
            assert f"# Measured: test ppl {ppl}," in header


def test_check_names_each_file_a_new_result_makes_stale(tmp_path: Path) -> None:
    import shutil

    results = _load()
    folder = tmp_path / "results"
    shutil.copytree(results.RESULTS_DIR, folder)
    recipes = tmp_path / "recipes"
    shutil.copytree(results.RECIPES_ROOT, recipes)
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    assert results.check(folder, [readme], recipes) == []
    summary = json.loads((folder / "memory--copy--gru.json").read_text())
    summary["test"]["test_acc"] = 0.5
    (folder / "memory--copy--gru.json").write_text(json.dumps(summary))
    assert results.check(folder, [readme], recipes) == [readme, recipes / "memory" / "copy.yaml"]
    for path, text in results.expected_files(folder, [readme], recipes).items():
        path.write_text(text)
    assert results.check(folder, [readme], recipes) == []
    assert "# Measured: test acc 0.5, validation acc" in (recipes / "memory" / "copy.yaml").read_text()
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="lacks the markers <!-- results:start -->"):
        results.check(folder, [readme], recipes)
