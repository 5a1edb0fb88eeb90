"""The alias rule of the registry, on a real MLflow SQLite store: an alias moves to a new version only when
its monitored metric is finite and at least as good as the holder's on the same metric, or when forced."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from zoo.tracking.registry import DECISION_TAG, METRIC_TAG, VALUE_TAG, Score, register

TASK = "tracking_toys.ToyClassifier"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowClient, str, Path]]:
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    (root / "model").mkdir()
    (root / "model" / "weights").write_text("stands in for a logged model")
    yield client, client.create_experiment("alias-rule"), root / "model"
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def fit_result(store: Any, name: str, score: Score | None, force: bool = False) -> tuple[Any, str]:
    """Register one "fit": a run holding the score as its metric history, and a version of ``name``."""
    client, experiment, model = store
    run_id = client.create_run(experiment).info.run_id
    if score is not None and math.isfinite(score.value):
        client.log_metric(run_id, score.metric, score.value)
    done = register(client, str(model), name, TASK, "champion", run_id=run_id, score=score, force_alias=force)
    return done, run_id


def champion(store: Any, name: str) -> str:
    return str(store[0].get_model_version_by_alias(name, "champion").version)


def test_worse_keeps_the_alias_better_or_equal_moves_it_force_moves_it(store: Any) -> None:
    client = store[0]
    first, _ = fit_result(store, "acc", Score("val_acc", "max", 0.5))
    assert first.alias_moved and champion(store, "acc") == "1"
    worse, run_id = fit_result(store, "acc", Score("val_acc", "max", 0.41))
    assert not worse.alias_moved and champion(store, "acc") == "1"
    assert worse.message == (
        "Registered acc version 2; champion stays at version 1 (val_acc 0.41 < 0.5); "
        "pass --tracking.force_alias true to move it"
    )
    # the run and the version say what happened; the version records its score
    assert client.get_run(run_id).data.tags[DECISION_TAG] == worse.message
    tags = client.get_model_version("acc", "2").tags
    assert tags[DECISION_TAG] == worse.message
    assert (tags[METRIC_TAG], float(tags[VALUE_TAG])) == ("val_acc", 0.41)
    better, _ = fit_result(store, "acc", Score("val_acc", "max", 0.75))
    assert better.alias_moved and champion(store, "acc") == "3"
    assert "champion moves to it from version 1 (val_acc 0.75 vs 0.5)" in better.message
    equal, _ = fit_result(store, "acc", Score("val_acc", "max", 0.75))
    assert equal.alias_moved and champion(store, "acc") == "4"
    forced, _ = fit_result(store, "acc", Score("val_acc", "max", 0.1), force=True)
    assert forced.alias_moved and champion(store, "acc") == "5"
    assert "(forced)" in forced.message
    assert sorted(int(v.version) for v in client.search_model_versions("name='acc'")) == [1, 2, 3, 4, 5]


def test_lower_is_better_for_a_min_metric(store: Any) -> None:
    fit_result(store, "ppl", Score("val_ppl", "min", 100.0))
    worse, _ = fit_result(store, "ppl", Score("val_ppl", "min", 120.0))
    assert not worse.alias_moved and "(val_ppl 120 > 100)" in worse.message
    better, _ = fit_result(store, "ppl", Score("val_ppl", "min", 90.0))
    assert better.alias_moved and champion(store, "ppl") == "3"


def test_a_different_metric_is_not_compared(store: Any) -> None:
    fit_result(store, "mixed", Score("val_acc", "max", 0.2))
    other, _ = fit_result(store, "mixed", Score("val_f1", "max", 0.9))
    assert not other.alias_moved and champion(store, "mixed") == "1"
    assert "version 1 was selected on val_acc (max), this one on val_f1 (max)" in other.message


def test_a_run_without_a_monitored_metric_does_not_move_an_alias(store: Any) -> None:
    first, _ = fit_result(store, "unscored", None)
    assert first.alias_moved  # nothing held it
    second, _ = fit_result(store, "unscored", None)
    assert not second.alias_moved and champion(store, "unscored") == "1"
    assert "monitors no metric" in second.message


def test_a_holder_without_score_tags_is_scored_by_its_runs_best_value(store: Any) -> None:
    client, experiment, model = store
    old_run = client.create_run(experiment).info.run_id
    for step, value in enumerate([0.3, 0.8, 0.6]):
        client.log_metric(old_run, "val_acc", value, step=step)
    client.create_registered_model("legacy", tags={"zoo.task": TASK})
    old = client.create_model_version("legacy", str(model), run_id=old_run)
    client.set_registered_model_alias("legacy", "champion", old.version)
    below_best, _ = fit_result(store, "legacy", Score("val_acc", "max", 0.7))
    assert not below_best.alias_moved and "(val_acc 0.7 < 0.8)" in below_best.message


def test_a_nonfinite_holder_is_replaced_by_a_finite_model(store: Any) -> None:
    client, experiment, model = store
    client.create_registered_model("diverged", tags={"zoo.task": TASK})
    old = client.create_model_version(
        "diverged", str(model), tags={METRIC_TAG: "val_acc", "zoo.metric_mode": "max", VALUE_TAG: "nan"}
    )
    client.set_registered_model_alias("diverged", "champion", old.version)
    finite, _ = fit_result(store, "diverged", Score("val_acc", "max", 0.05))
    assert finite.alias_moved and champion(store, "diverged") == "2"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_nonfinite_score_is_never_registered(store: Any, value: float) -> None:
    client = store[0]
    if not client.search_registered_models("name='guarded'"):
        fit_result(store, "guarded", Score("val_acc", "max", 0.5))
    before = len(client.search_model_versions("name='guarded'"))
    with pytest.raises(ValueError, match="non-finite"):
        fit_result(store, "guarded", Score("val_acc", "max", value), force=True)
    assert len(client.search_model_versions("name='guarded'")) == before
