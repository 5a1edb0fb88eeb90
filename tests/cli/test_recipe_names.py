"""``-c NAME`` runs a bundled recipe; a path that exists wins; an unknown name lists the valid ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_support import run_zoo

from zoo.cli import find_recipe, list_recipes, resolve_recipe_names


@pytest.mark.parametrize(
    "name", ["quickstart", "classify/sst2-gru", "recipes/lm/ptb-gru.yaml", "tag/ewt-gru.yaml"]
)
def test_a_recipe_name_resolves_to_the_bundled_file(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # away from the repository's `recipes` folder
    key = name.removeprefix("recipes/").removesuffix(".yaml")
    assert resolve_recipe_names(["fit", "-c", name]) == ["fit", "-c", str(list_recipes()[key])]
    assert resolve_recipe_names(["test", f"--config={name}"]) == ["test", f"--config={list_recipes()[key]}"]


def test_fit_by_name_parses_the_bundled_recipe(zoo_main) -> None:
    result = zoo_main("fit", "-c", "classify/sst2-gru", "--print_config=skip_null")
    assert result.returncode == 0, result.output
    config = yaml.safe_load(result.stdout)
    assert config["data"]["init_args"]["path"] == "stanfordnlp/sst2"


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_every_trainer_command_takes_a_name(zoo_main, command: str) -> None:
    result = zoo_main(command, "-c", "quickstart", "--print_config=skip_null")
    assert result.returncode == 0, result.output
    assert yaml.safe_load(result.stdout)["data"]["class_path"] == "zoo.data.CuisineMemoryData"


def test_several_configs_by_name_and_by_path_merge_in_order(zoo_main, tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("trainer:\n  max_epochs: 7\n")
    result = zoo_main("fit", "-c", "quickstart", "-c", str(extra), "--print_config=skip_null")
    assert result.returncode == 0, result.output
    assert yaml.safe_load(result.stdout)["trainer"]["max_epochs"] == 7


def test_an_existing_path_wins_over_a_recipe_of_the_same_name(zoo_main, tmp_path: Path) -> None:
    # a file called `quickstart` in the working directory is the user's, not the bundled recipe
    (tmp_path / "quickstart").write_text(
        Path(find_recipe("quickstart")).read_text().replace("max_epochs: 4", "max_epochs: 9")
    )
    result = zoo_main("fit", "-c", "quickstart", "--print_config=skip_null")
    assert result.returncode == 0, result.output
    assert yaml.safe_load(result.stdout)["trainer"]["max_epochs"] == 9


def test_an_unknown_name_exits_2_with_the_valid_names_and_a_suggestion(tmp_path: Path) -> None:
    result = run_zoo("fit", "-c", "quikstart", "--trainer.max_epochs", "1", cwd=tmp_path)
    assert result.returncode == 2, result.output
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith(
        "zoo: error: unknown recipe 'quikstart', and no file of that name. Did you mean quickstart?"
    )
    assert all(name in first for name in list_recipes())
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_an_unknown_name_without_a_close_one_gets_no_suggestion(zoo_main) -> None:
    result = zoo_main("fit", "-c", "zzzz/qqqq")
    assert result.returncode == 2
    assert "Did you mean" not in result.stderr and "classify/sst2-gru" in result.stderr


def test_inline_config_text_is_left_to_jsonargparse() -> None:
    assert resolve_recipe_names(["fit", "-c", "{trainer: {max_epochs: 1}}"]) == [
        "fit",
        "-c",
        "{trainer: {max_epochs: 1}}",
    ]


@pytest.mark.parametrize("name", ["classify/csv", "tag/conllu", "lm/text", "forecast/csv"])
def test_a_generic_recipe_without_its_file_asks_for_data_files(zoo_main, name: str, tmp_path: Path) -> None:
    result = zoo_main("fit", "-c", name)
    assert result.returncode == 2, result.output
    first = next(line for line in result.stderr.splitlines() if line.startswith("zoo: error:"))
    assert (
        first.startswith("zoo: error: path=")
        and "no data_files were given: pass --data.data_files FILE" in first
    )
    assert not (tmp_path / "mlflow.db").exists()
