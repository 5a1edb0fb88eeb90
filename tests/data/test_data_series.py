"""Time-series windows: train-only normalisation, time-ordered splits, no target leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data.series import TimeSeriesData


def _write_series(path: Path, n: int, shift_after: int | None = None) -> Path:
    t = np.arange(n)
    a = np.sin(t / 5.0) + 0.01 * t
    b = np.cos(t / 3.0)
    if shift_after is not None:
        a = a.copy()
        a[shift_after:] += 100.0  # a regime change that only later splits see
    lines = ["step,a,b"] + [f"{i},{x:.6f},{y:.6f}" for i, x, y in zip(t, a, b, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_windows_splits_and_train_only_statistics(tmp_path: Path) -> None:
    path = _write_series(tmp_path / "s.csv", 200)
    dm = TimeSeriesData(
        "csv", str(path), target_columns=["a"], time_column="step", input_length=10, horizon=3,
        cache_dir=str(tmp_path / "c"),
    )  # fmt: skip
    assert (dm.num_features, dm.num_targets, dm.horizon, dm.input_length) == (2, 1, 3, 10)
    assert dm.boundaries == {"train": (0, 160), "validation": (160, 180), "test": (180, 200)}
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    assert dm.target_mean[0] == pytest.approx(raw[:160, 1].mean())
    assert dm.target_std[0] == pytest.approx(raw[:160, 1].std())
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape == (64, 10, 2) and batch["targets"].shape == (64, 3, 1)
    assert batch["inputs"].dtype == torch.float32
    for split, (start, stop) in dm.boundaries.items():
        ds = dm.windows(split)
        times = ds.times
        assert int(times.min()) >= max(start, 10) and int(times.max()) + 3 <= stop, f"{split} targets leak"
        assert int(times.min()) - 10 >= start - 10, "inputs reach back at most one input window"
        item = ds[0]
        t = int(times[0])
        expected = (raw[t : t + 3, 1] - dm.target_mean[0]) / dm.target_std[0]
        assert np.allclose(item["targets"][:, 0].numpy(), expected, atol=1e-5)
        expected_in = (raw[t - 10 : t, 2] - dm.feature_mean[1]) / dm.feature_std[1]
        assert np.allclose(item["inputs"][:, 1].numpy(), expected_in, atol=1e-5)
    train_targets = set(range(int(dm.windows("train").times.max()) + 3))
    assert max(train_targets) < 160, "no training target lies in validation"


def test_later_splits_do_not_change_the_statistics(tmp_path: Path) -> None:
    plain = TimeSeriesData("csv", str(_write_series(tmp_path / "p.csv", 200)), time_column="step",
                           input_length=5, cache_dir=str(tmp_path / "c"))  # fmt: skip
    shifted = TimeSeriesData("csv", str(_write_series(tmp_path / "q.csv", 200, shift_after=160)),
                             time_column="step", input_length=5, cache_dir=str(tmp_path / "c"))  # fmt: skip
    assert plain.target_mean == pytest.approx(shifted.target_mean)
    assert plain.feature_std == pytest.approx(shifted.feature_std)
    # the test split of the shifted series sits far outside the train-fitted scale, as it should
    assert float(shifted.windows("test")[0]["targets"][0, 0]) > 10


def test_explicit_splits_and_errors(tmp_path: Path) -> None:
    train = _write_series(tmp_path / "train.csv", 100)
    val = _write_series(tmp_path / "val.csv", 30)
    dm = TimeSeriesData("csv", {"train": str(train), "validation": str(val)}, feature_columns=["a", "b"],
                        input_length=8, test_fraction=0.0, cache_dir=str(tmp_path / "c"))  # fmt: skip
    assert dm.boundaries["validation"] == (100, 130)
    assert len(next(iter(dm.val_dataloader()))["inputs"]) == 30
    with pytest.raises(ValueError, match="the columns there are"):
        TimeSeriesData("csv", str(train), target_columns=["zz"], cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="too few for input_length"):
        TimeSeriesData("csv", str(train), input_length=500, cache_dir=str(tmp_path / "c"))
