"""The ``zoo`` command on toy modules: linking, defaults, extra commands and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from cli_support import REPO, run_zoo
from torch import nn

import zoo
from zoo.cli import LINKED_SIZES, ZooCLI, list_recipes, main_metric, recipe_purpose

TOY_TEXT = ["--model", "_toy.ToyClassifier", "--data", "_toy.ToyTextData"]
SMALL = ["--model.encoder.cell", "gru", "--model.encoder.hidden_size", "8"]


def test_help_lists_subcommands_and_extra_commands(zoo_main) -> None:
    result = zoo_main("--help")
    assert result.returncode == 0
    for word in ("fit", "validate", "test", "predict", "zoo cells", "zoo recipes"):
        assert word in result.stdout


def test_cells_table_counts_parameters_like_torch(zoo_main) -> None:
    result = zoo_main("cells", "--input-size", "3", "--hidden-size", "5")
    assert result.returncode == 0
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    for name in zoo.list_cells():
        assert name in rows, f"{name} missing from `zoo cells`"
    torch_counts = {
        "gru": nn.GRU(3, 5),
        "lstm": nn.LSTM(3, 5),
        "rnn_tanh": nn.RNN(3, 5),
    }
    for name, module in torch_counts.items():
        assert rows[name][1] == f"{sum(p.numel() for p in module.parameters()):,}"
    assert rows["gru"][2] == "yes"  # fused flag column
    assert "Cho" in " ".join(rows["gru"])


def test_cells_pattern_filters(zoo_main) -> None:
    result = zoo_main("cells", "rnn*")
    names = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()][:-1]
    assert names and all(n.startswith("rnn") for n in names[:-1] if n != "parameters")


def test_recipes_lists_every_bundled_recipe_with_its_purpose(zoo_main) -> None:
    result = zoo_main("recipes")
    assert result.returncode == 0
    recipes = list_recipes()
    assert {"quickstart", "lm/ptb-gru", "lm/ptb-lstm", "classify/sst2-gru"} <= set(recipes)
    for name, path in recipes.items():
        purpose = recipe_purpose(path)
        assert purpose, f"{name} has no one-line purpose in its header"
        assert f"{name}  " in result.stdout and purpose in result.stdout


def test_recipes_show_and_path(zoo_main) -> None:
    shown = zoo_main("recipes", "show", "lm/ptb-gru")
    path = zoo_main("recipes", "path", "quickstart")
    assert shown.returncode == 0 and path.returncode == 0
    assert shown.stdout == (REPO / "zoo" / "recipes" / "lm" / "ptb-gru.yaml").read_text()
    assert Path(path.stdout.strip()) == Path(zoo.__file__).parent / "recipes" / "quickstart.yaml"


def test_unknown_recipe_lists_the_valid_ones(zoo_main) -> None:
    result = zoo_main("recipes", "path", "lm/ptb-rnn")
    assert result.returncode != 0
    assert "unknown recipe 'lm/ptb-rnn'" in result.stderr
    assert "quickstart" in result.stderr and "lm/ptb-gru" in result.stderr


def test_main_metric_per_task() -> None:
    class SequenceClassifier:  # named like the task: the table applies
        pass

    class Declared:
        main_metric = ("val_bleu", "max")

    assert main_metric(SequenceClassifier) == ("val_acc", "max")
    assert main_metric(Declared) == ("val_bleu", "max")
    assert main_metric(object) == ("val_loss", "min")


@pytest.mark.slow
def test_fit_links_data_sizes_and_adds_defaults(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    result = run_zoo(
        "fit", *TOY_TEXT, *SMALL,
        "--data.num_classes_wanted", "5", "--data.num_examples", "64",
        "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    # tracked by default: one run in the SQLite store in the working directory
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    params = run.data.params
    # linked from the data module: 5 classes, vocabulary 5 + 11, their names, the pad id
    assert params["num_classes"] == "5" and params["vocab_size"] == "16" and params["pad_id"] == "0"
    assert params["label_names"] == str([f"class{i}" for i in range(5)])
    assert params["cell"] == "gru" and int(params["num_parameters"]) > 0
    # the learning-rate monitor (a logger is present) and the metrics
    assert {"lr-Adam", "val_acc", "val_loss"} <= set(run.data.metrics)
    # the resolved config, logged to the run, with the seed
    config_file = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert yaml.safe_load(Path(config_file).read_text())["seed_everything"] == 1234
    assert f"MLflow run {run.info.run_id}" in result.stdout and "Best val_loss:" in result.stdout
    # checkpoints: the best (val_loss for a model the table does not know) and the last, in an explicit
    # directory under default_root_dir (not under the MLflow run's ids), linked to the run
    ckpt_dir = tmp_path / "checkpoints" / "version_0"
    ckpts = sorted(p.name for p in ckpt_dir.glob("*.ckpt"))
    assert "last.ckpt" in ckpts and len(ckpts) == 2, ckpts
    assert (ckpt_dir / "mlflow_run.json").read_text().count(run.info.run_id) == 1
    state = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert state["state_dict"]["head.weight"].shape == (5, 8)
    assert "'monitor': 'val_loss'" in " ".join(state["callbacks"])
    # a new process finds the run's best checkpoint by name and logs the test metrics into the fit's run
    tested = run_zoo(
        "test", *TOY_TEXT, *SMALL, "--data.num_classes_wanted", "5", "--ckpt_path", "best",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert tested.returncode == 0, tested.output
    assert "test_acc" in tested.stdout
    assert re.search(r"checkpoints/version_0/epoch=\d-step=\d+\.ckpt", tested.output), tested.output[-2000:]
    (again,) = client.search_runs([run.info.experiment_id])
    assert again.info.run_id == run.info.run_id and "test_acc" in again.data.metrics
    # the fit's config stays; the test's config is logged beside it
    assert {"config.yaml", "config_test.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow
def test_links_apply_per_class_and_checkpoints_without_logger(tmp_path: Path) -> None:
    result = run_zoo(
        "fit", "--model", "_toy.ToyForecaster", "--data", "_toy.ToySeriesData", *SMALL,
        "--data.forecast_steps", "3",
        "--trainer.max_epochs", "1",
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    ckpt_dir = tmp_path / "checkpoints" / "version_0"
    state = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    hparams = state["hyper_parameters"]
    # only the time-series sizes reach the forecaster; the text sizes do not exist there
    assert hparams["horizon"] == 3 and hparams["num_features"] == 1 and hparams["target_std"] == [1.0]
    assert not set(hparams) & {"vocab_size", "num_classes", "pad_id"}
    assert state["state_dict"]["head.weight"].shape == (3, 8)
    assert len(list(ckpt_dir.glob("*.ckpt"))) == 2


def test_print_config_shows_linked_values(zoo_main) -> None:
    result = zoo_main("fit", *TOY_TEXT, *SMALL, "--data.num_classes_wanted", "4", "--print_config")
    assert result.returncode == 0, result.output
    config = yaml.safe_load(result.stdout)
    init = config["model"]["init_args"]
    assert init["num_classes"] == 4 and init["vocab_size"] == 15 and init["pad_id"] == 0
    assert config["checkpoint"]["save_last"] is True
    assert result.stdout.startswith("# model.vocab_size, model.num_classes")


def test_printed_config_runs_again(zoo_main, tmp_path: Path) -> None:
    printed = zoo_main("fit", *TOY_TEXT, *SMALL, "--print_config").stdout
    (tmp_path / "printed.yaml").write_text(printed)
    again = zoo_main("fit", "-c", str(tmp_path / "printed.yaml"), "--print_config")
    assert again.returncode == 0, again.output
    assert yaml.safe_load(again.stdout) == yaml.safe_load(printed)


def test_print_config_without_a_model_prints_the_template(zoo_main) -> None:
    result = zoo_main("fit", "--print_config")
    assert result.returncode == 0
    assert "trainer:" in result.stdout and "checkpoint:" in result.stdout


def test_unknown_cell_lists_the_valid_cells(tmp_path: Path) -> None:
    result = run_zoo("fit", *TOY_TEXT, "--model.encoder.cell", "nonexistent", cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown cell 'nonexistent'" in result.stderr
    for name in zoo.list_cells():
        assert name in result.stderr


def test_unknown_yaml_key_is_named(zoo_main, tmp_path: Path) -> None:
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(
        "model:\n  class_path: _toy.ToyClassifier\n  init_args:\n"
        "    encoder: {cell: gru, hidden_size: 8}\n    embeding_dim: 4\n"
        "data:\n  class_path: _toy.ToyTextData\n"
    )
    result = zoo_main("fit", "-c", str(recipe))
    assert result.returncode != 0
    assert "embeding_dim" in result.stderr


def test_unknown_trainer_key_is_named(zoo_main, tmp_path: Path) -> None:
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("trainer:\n  max_epoch: 3\n")
    result = zoo_main("fit", "-c", str(recipe), *TOY_TEXT, *SMALL)
    assert result.returncode != 0
    assert "max_epoch" in result.stderr


def test_missing_data_file_names_the_path(zoo_main) -> None:
    result = zoo_main("fit", *TOY_TEXT, *SMALL, "--data.data_files", "{train: no/such/train.txt}")
    assert result.returncode != 0
    assert "no/such/train.txt" in result.stderr and "data.data_files.train" in result.stderr


def test_relative_data_file_is_found_beside_the_config(zoo_main, tmp_path: Path) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "local.txt").write_text("x\n")
    (folder / "r.yaml").write_text(
        "data:\n  class_path: _toy.ToyTextData\n  init_args:\n    data_files: local.txt\n"
    )
    result = zoo_main(
        "fit", "-c", str(folder / "r.yaml"), "--model", "_toy.ToyClassifier", *SMALL, "--print_config"
    )
    assert result.returncode == 0, result.output
    assert yaml.safe_load(result.stdout)["data"]["init_args"]["data_files"] == str(folder / "local.txt")


def test_size_set_against_the_data_is_an_error(zoo_main) -> None:
    result = zoo_main("fit", *TOY_TEXT, *SMALL, "--model.num_classes", "7", "--trainer.max_steps", "0")
    assert result.returncode != 0
    assert "model.num_classes=7 but the data module has num_classes=3" in result.stderr


def test_task_and_data_that_do_not_fit_name_the_missing_sizes(zoo_main) -> None:
    result = zoo_main("fit", "--model", "_toy.ToyForecaster", "--data", "_toy.ToyTextData", *SMALL)
    assert result.returncode != 0
    assert "_toy.ToyForecaster needs num_features, num_targets, horizon" in result.stderr
    assert "_toy.ToyTextData does not provide them" in result.stderr


def test_linked_sizes_cover_the_interfaces() -> None:
    assert set(LINKED_SIZES) == {
        "vocab_size", "num_classes", "label_names", "num_tags", "tag_names", "pad_id",
        "num_features", "num_targets", "horizon", "target_mean", "target_std", "char_vocab", "max_word_chars",
    }  # fmt: skip
    assert issubclass(ZooCLI, __import__("lightning.pytorch.cli", fromlist=["LightningCLI"]).LightningCLI)


def test_ckpt_path_best_without_a_run_says_what_to_do(zoo_main, tmp_path: Path) -> None:
    result = zoo_main(
        "test", *TOY_TEXT, *SMALL, "--ckpt_path", "best", "--trainer.default_root_dir", str(tmp_path)
    )
    assert result.returncode != 0
    assert "no best checkpoint found" in result.stderr and "zoo fit" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("hidden_size", "0", "hidden_size must be an integer >= 1 (units of each layer's state), got 0"),
        ("hidden_size", "-5", "hidden_size must be an integer >= 1 (units of each layer's state), got -5"),
        ("num_layers", "0", "num_layers must be an integer >= 1 (stacked layers), got 0"),
        ("dropout", "1.5", "dropout must be a number in [0, 1)"),
    ],
)
def test_invalid_encoder_sizes_exit_2_before_anything_is_built(
    zoo_main, tmp_path: Path, option: str, value: str, message: str
) -> None:
    result = zoo_main("fit", *TOY_TEXT, *SMALL, f"--model.encoder.{option}", value)
    assert result.returncode == 2, result.output
    assert f"--model.encoder: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "lightning_logs").exists()
