"""Where tracking goes by default, the SQLite store made by rank 0 only, and failing fast when the
tracking server is down."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from lightning.pytorch.utilities import rank_zero_only
from tracking_support import free_port

import zoo.tracking.uri
from zoo.tracking import (
    TrackingServerUnreachable,
    ZooMLFlowLogger,
    check_tracking_server,
    ensure_store,
    resolve_tracking_uri,
)


def test_resolution_rule(fresh_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_tracking_uri() == f"sqlite:///{fresh_cwd.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri() == "http://tracking.example:5000"
    # an explicit URI beats the environment; a relative SQLite path is made absolute
    assert resolve_tracking_uri("sqlite:///rel.db") == f"sqlite:///{fresh_cwd.resolve() / 'rel.db'}"


def test_other_ranks_wait_for_rank_zero_and_never_create_the_store(
    fresh_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)
    monkeypatch.setattr(zoo.tracking.uri, "STORE_WAIT_S", 0.5)
    # the environment is read when the logger is built, not when the module was imported
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh_cwd}/from-env.db")
    with pytest.raises(TimeoutError, match=r"rank 0 to create the MLflow store .*from-env\.db"):
        ZooMLFlowLogger()
    assert list(fresh_cwd.iterdir()) == []


@pytest.mark.slow
def test_rank_zero_creates_the_default_store_at_construction(fresh_cwd: Path) -> None:
    logger = ZooMLFlowLogger(experiment_name="x")
    assert logger.tracking_uri == f"sqlite:///{fresh_cwd.resolve() / 'mlflow.db'}"
    assert sorted(p.name for p in fresh_cwd.iterdir()) == ["mlflow.db"]  # no file: store, no leftovers
    before = (fresh_cwd / "mlflow.db").stat().st_mtime_ns
    ensure_store(logger.tracking_uri)  # an existing store is left alone
    assert (fresh_cwd / "mlflow.db").stat().st_mtime_ns == before
    assert logger.experiment.get_experiment_by_name("Default") is not None  # a working store


def test_a_server_that_is_down_fails_fast_naming_the_uri(
    fresh_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingServerUnreachable, match=f"{uri} is not reachable.*Nothing was trained"):
        ZooMLFlowLogger(tracking_uri=uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackingServerUnreachable, match=uri):
        ZooMLFlowLogger()
    assert time.monotonic() - start < 15
    check_tracking_server(f"sqlite:///{fresh_cwd}/x.db")  # not a server: nothing to check


def _build_store(uri: str) -> str:
    from mlflow.tracking import MlflowClient

    zoo.tracking.uri.ensure_store(uri)
    return MlflowClient(uri).create_experiment(f"exp-{os.getpid()}")


@pytest.mark.slow
def test_ensure_store_in_several_processes_at_once_builds_one_store(tmp_path: Path) -> None:
    # each process used to build its own store and rename it into place: one then wrote to a replaced
    # file ("attempt to write a readonly database")
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        created = pool.map(_build_store, [uri] * 3)
    from mlflow.tracking import MlflowClient

    experiments = {e.experiment_id: e.name for e in MlflowClient(uri).search_experiments()}
    assert len(set(created)) == 3 and set(created) <= set(experiments)
    assert not list(tmp_path.glob(".mlflow.db.*.creating"))
