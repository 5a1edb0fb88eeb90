"""Every bundled recipe: its header, its parse against the real classes, and a fast_dev_run through the
real ``zoo`` entry point in a subprocess (on ../shared/data for the corpora, offline)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from cli_support import GENERIC_RECIPES, REPO, run_zoo, shared_data, write_tiny_data

import zoo
from zoo.cli import LINKED_SIZES

RECIPE_ROOT = REPO / "zoo" / "recipes"
RECIPES = sorted(p.relative_to(RECIPE_ROOT).with_suffix("").as_posix() for p in RECIPE_ROOT.rglob("*.yaml"))

try:
    # the classes the recipes name (a bare `import zoo.data` can succeed on a leftover folder)
    for module, names in {
        "zoo.tasks": ("SequenceClassifier", "LanguageModel", "TokenTagger", "Forecaster"),
        "zoo.data": ("CuisineMemoryData", "LanguageModelingData", "TextClassificationData",
                     "TokenTaggingData", "TimeSeriesData", "CopyTaskData", "AddingProblemData"),
    }.items():  # fmt: skip
        imported = importlib.import_module(module)
        for name in names:
            getattr(imported, name)
    MISSING: str | None = None
except (ImportError, AttributeError) as err:  # the recipes cannot run without the tasks and data modules
    MISSING = f"zoo.tasks / zoo.data are not complete yet ({err}); the recipes need them"

needs_tasks = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def local_overrides(name: str, folder: Path) -> list[str]:
    """The documented offline overrides of a recipe: a tiny file written to ``folder`` for a generic
    recipe, the corpora in ../shared/data for a corpus recipe."""
    if name in GENERIC_RECIPES:
        return ["--data.data_files", str(write_tiny_data(GENERIC_RECIPES[name], folder))]
    family = name.split("/")[0]
    if family not in ("lm", "classify", "tag"):
        return []
    data = shared_data()
    if data is None:
        pytest.skip("../shared/data is absent (set ZOO_SHARED_DATA): this recipe trains on a real corpus")
    if family == "lm":
        ptb = data / "ptb"
        files = f"{{train: {ptb}/ptb.train.txt, validation: {ptb}/ptb.valid.txt, test: {ptb}/ptb.test.txt}}"
        return ["--data.path", "text", "--data.text_column", "text", "--data.data_files", files]
    if family == "classify":
        sst = data / "sst2"
        files = f"{{train: {sst}/train.tsv, validation: {sst}/dev.tsv, test: {sst}/test.tsv}}"
        return ["--data.path", "csv", "--data.load_kwargs", '{delimiter: "\t"}', "--data.data_files", files]
    ewt = data / "ud_english_ewt"
    files = (
        f"{{train: {ewt}/en_ewt-ud-train.conllu, validation: {ewt}/en_ewt-ud-dev.conllu, "
        f"test: {ewt}/en_ewt-ud-test.conllu}}"
    )
    return ["--data.path", "conllu", "--data.data_files", files]


def uses_shared_data(name: str) -> bool:
    return name.split("/")[0] in ("lm", "classify", "tag") and name not in GENERIC_RECIPES


def recipe_params() -> list:
    return [pytest.param(n, marks=[pytest.mark.data] if uses_shared_data(n) else [], id=n) for n in RECIPES]


def test_the_catalogue_is_complete() -> None:
    assert {
        "quickstart", "memory/cuisine", "lm/ptb-lstm", "lm/ptb-gru", "lm/ptb-char",
        "classify/sst2-gru", "tag/ewt-lstm", "tag/ewt-gru", "tag/ewt-gru-char", "forecast/sunspots-gru",
        *GENERIC_RECIPES,
    } <= set(RECIPES)  # fmt: skip


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_header(name: str) -> None:
    text = (RECIPE_ROOT / f"{name}.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    # the command runs as written, from any folder: a recipe by name, and a generic one on the user's file
    expected = f"# zoo fit -c {name}" + (" --data.data_files my." if name in GENERIC_RECIPES else "")
    assert header[0] == expected or header[0].startswith(
        expected + ("" if name in GENERIC_RECIPES else " ")
    ), header[0]
    # "Measured:" is written from docs/results/ by benchmarks/results.py render (tests/benchmarks checks it)
    for field in ("Trains:", "Measured:", "Swap the cell:"):
        assert any(field in line for line in header), f"{name}: header lacks {field!r}"
    swap = next(line for line in header if "Swap the cell:" in line)
    assert "--model.encoder.cell" in swap
    config = yaml.safe_load(text)
    # sizes come from the data module, never from the recipe
    linked = set(LINKED_SIZES)
    assert not linked & set(config["model"]["init_args"]), f"{name} types a linked size"
    assert config["model"]["init_args"]["encoder"]["cell"] in zoo.list_cells()


@needs_tasks
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_parses_against_the_real_classes(name: str, zoo_main) -> None:
    result = zoo_main("fit", "-c", str(RECIPE_ROOT / f"{name}.yaml"), "--print_config=skip_null")
    assert result.returncode == 0, result.output
    assert yaml.safe_load(result.stdout)["model"]["class_path"].startswith("zoo.tasks.")


@needs_tasks
def test_quickstart_print_config_shows_the_linked_sizes(zoo_main) -> None:
    result = zoo_main("fit", "-c", str(RECIPE_ROOT / "quickstart.yaml"), "--print_config")
    assert result.returncode == 0, result.output
    init = yaml.safe_load(result.stdout)["model"]["init_args"]
    assert init["num_classes"] == 8 and init["vocab_size"] > 8 and len(init["label_names"]) == 8


@needs_tasks
def test_quickstart_with_an_unknown_cell_lists_the_valid_cells(tmp_path: Path) -> None:
    result = run_zoo(
        "fit", "-c", str(RECIPE_ROOT / "quickstart.yaml"), "--model.encoder.cell", "nonexistent", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "unknown cell 'nonexistent'" in result.stderr
    assert all(name in result.stderr for name in zoo.list_cells())
    assert not (tmp_path / "mlflow.db").exists()


@needs_tasks
def test_quickstart_with_an_unknown_key_names_it_before_tracking_starts(zoo_main, tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("tracking:\n  log_modle: true\n")
    result = zoo_main("fit", "-c", str(RECIPE_ROOT / "quickstart.yaml"), "-c", str(typo))
    assert result.returncode != 0
    assert "log_modle" in result.stderr
    # a config error stops the run before a tracking store is opened in the working directory
    assert not (tmp_path / "mlflow.db").exists()


@needs_tasks
def test_recipe_with_a_missing_data_file_names_the_path(zoo_main, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "train.tsv"
    result = zoo_main(
        "fit", "-c", str(RECIPE_ROOT / "classify" / "sst2-gru.yaml"),
        "--data.path", "csv", "--data.data_files", f"{{train: {missing}}}",
    )  # fmt: skip
    assert result.returncode != 0
    assert str(missing) in result.stderr


@needs_tasks
@pytest.mark.slow
@pytest.mark.parametrize("name", recipe_params())
def test_recipe_fast_dev_run(name: str, tmp_path: Path) -> None:
    # by name, as the header says (nothing in tmp_path shadows it)
    result = run_zoo(
        "fit", "-c", name, *local_overrides(name, tmp_path / "data"),
        "--trainer.fast_dev_run", "true",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-4000:]
    assert "val_" in result.output or "fast_dev_run" in result.output
    # a fast_dev_run builds no logger (Lightning would replace it), so no store and no model logging
    assert not (tmp_path / "mlflow.db").exists()
    if name == "quickstart":
        assert "tracking is off" in result.stderr
