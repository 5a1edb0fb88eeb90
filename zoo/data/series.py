"""Time-series data: windows of a multivariate series (CSV/parquet columns) to a forecast horizon.

Splits are ordered in time (train, then validation, then test) and normalisation statistics come from the
training rows only. A validation or test window may read up to ``input_length`` earlier rows as its input
(the past is known at forecast time), but its targets lie inside its own split, and no training target lies
outside train.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.batching import ResumableDataLoader, loader_options
from zoo.data.encoding import datasets_cache
from zoo.data.locate import RowLocator
from zoo.data.predict_inputs import PredictWindowCollate, predict_files_of, predict_loader
from zoo.data.sources import DataFiles, check_columns, load_splits
from zoo.data.splits import SplitDataModule
from zoo.data.validation import check_numbers
from zoo.errors import DataValidationError, ZooConfigError

_ORDER = ("train", "validation", "test")


class WindowDataset(Dataset):
    """Windows ``inputs[t - L : t]`` -> ``targets[t : t + horizon]`` at the given start times ``t``.

    Items: ``{"inputs": Float[L, F], "targets": Float[horizon, C]}``.
    """

    def __init__(
        self, inputs: Tensor, targets: Tensor, times: Tensor, input_length: int, horizon: int
    ) -> None:
        self.inputs, self.targets, self.times = inputs, targets, times
        self.input_length, self.horizon = input_length, horizon

    def __len__(self) -> int:
        return int(self.times.numel())

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        t = int(self.times[i])
        return {
            "inputs": self.inputs[t - self.input_length : t],
            "targets": self.targets[t : t + self.horizon],
        }


def window_times(start: int, stop: int, input_length: int, horizon: int, stride: int = 1) -> Tensor:
    """Forecast times ``t`` whose targets ``[t, t + horizon)`` lie in ``[start, stop)`` and whose input
    ``[t - input_length, t)`` starts at row 0 or later."""
    first = max(start, input_length)
    last = stop - horizon  # inclusive
    if last < first:
        return torch.empty(0, dtype=torch.long)
    return torch.arange(first, last + 1, stride, dtype=torch.long)


def _numeric_columns(ds: datasets.Dataset) -> list[str]:
    out = []
    for col, feat in ds.features.items():
        if isinstance(feat, datasets.Value) and (
            feat.dtype.startswith("int") or feat.dtype.startswith("float") or feat.dtype.startswith("uint")
        ):
            out.append(col)
    return out


class TimeSeriesData(SplitDataModule):
    """Multivariate series -> ``{"inputs": Float[B, L, F], "targets": Float[B, horizon, C]}`` (normalised).

    Args:
        path: a builder (``csv``, ``parquet``, ``json``) or hub name.
        data_files: the files; one file is split in time order, a dict gives consecutive splits.
        name: the dataset's configuration name.
        feature_columns: input columns (default: every numeric column but ``time_column``).
        target_columns: columns to forecast (default: ``feature_columns``).
        time_column: a column to sort the rows by (default: the file order).
        input_length: steps of history per window (``L``).
        horizon: steps to forecast.
        validation_fraction: share of the rows (in time order, after train) for validation when there is
            no validation split.
        test_fraction: share of the rows (the last ones) for test when there is no test split.
        stride: steps between consecutive windows.
        normalize: standardise features and targets with train-only mean and std.
        batch_size: windows per batch.
        num_workers: ``DataLoader`` workers.
        pin_memory: pin batches (default: when CUDA is available).
        cache_dir: root of the caches.
        load_kwargs: extra ``datasets.load_dataset`` arguments.
        predict_files: windows for ``zoo predict -c``: ``.csv`` files (one window each, with the feature
            columns) or ``.jsonl`` files (one JSON array of rows per line).

    Attributes:
        num_features, num_targets, horizon, input_length, target_mean, target_std (train statistics in
        original units, to undo the normalisation), feature_mean, feature_std, boundaries (row ranges of
        the splits).
    """

    def __init__(
        self,
        path: str = "csv",
        data_files: DataFiles | None = None,
        name: str | None = None,
        feature_columns: list[str] | None = None,
        target_columns: list[str] | None = None,
        time_column: str | None = None,
        input_length: int = 24,
        horizon: int = 1,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.1,
        stride: int = 1,
        normalize: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        cache_dir: str | None = None,
        load_kwargs: dict[str, Any] | None = None,
        predict_files: str | list[str] | None = None,
    ) -> None:
        super().__init__()
        # not a hyperparameter: `zoo predict` logs into the fit's run, which has the fit's value
        self.save_hyperparameters(ignore=["predict_files"])
        self.predict_files = predict_files_of(predict_files)
        if input_length < 1 or horizon < 1 or stride < 1:
            raise ZooConfigError(
                f"input_length, horizon and stride must be >= 1, got {input_length}, {horizon}, {stride}"
            )
        splits = load_splits(
            path,
            data_files,
            name,
            carve_validation=False,
            cache_dir=datasets_cache(cache_dir),
            **(load_kwargs or {}),
        )
        unknown = [s for s in splits if s not in _ORDER]
        if unknown:
            raise ZooConfigError(f"unknown split(s) {unknown}; time series use {list(_ORDER)}")
        train = splits["train"]
        if feature_columns is None:
            feature_columns = [c for c in _numeric_columns(train) if c != time_column]
            if not feature_columns:
                raise DataValidationError(
                    f"no numeric columns to use as features; the columns are {train.column_names}"
                )
        target_columns = list(target_columns or feature_columns)
        needed = list(dict.fromkeys([*feature_columns, *target_columns]))
        check_columns(splits, needed + ([time_column] if time_column else []), what="time series")
        locator = RowLocator.for_source(path, data_files, None, load_kwargs)
        check_numbers(splits, needed, locator)  # a time column may hold dates: it is only sorted by

        parts = {s: self._frame(splits[s], needed, time_column) for s in _ORDER if s in splits}
        table = np.concatenate([parts[s] for s in parts], axis=0)
        sizes = {s: len(parts[s]) for s in parts}
        # carve missing splits from the end of the series, test last, so time order is train < val < test
        n = len(table)
        n_test = sizes.get("test", 0)
        if "test" not in sizes and test_fraction > 0:
            n_test = max(1, round(n * test_fraction))
            sizes["validation" if "validation" in sizes else "train"] -= n_test
        n_val = sizes.get("validation", 0)
        if "validation" not in sizes:
            n_val = max(1, round(n * validation_fraction))
            sizes["train"] -= n_val
        n_train, n_val = sizes["train"], sizes.get("validation", n_val)
        if n_train <= input_length:
            raise DataValidationError(
                f"the training split has {n_train} rows, too few for input_length={input_length}; use more "
                "data or a shorter input_length"
            )
        self.boundaries = {
            "train": (0, n_train),
            "validation": (n_train, n_train + n_val),
            "test": (n_train + n_val, n_train + n_val + n_test),
        }
        if n != n_train + n_val + n_test:
            raise DataValidationError(
                "a split has no rows left after carving; lower validation/test fractions"
            )

        columns = {c: i for i, c in enumerate(needed)}
        feats = table[:, [columns[c] for c in feature_columns]]
        targs = table[:, [columns[c] for c in target_columns]]
        fit = slice(0, n_train)
        if normalize:
            f_mean, f_std = feats[fit].mean(0), feats[fit].std(0)
            t_mean, t_std = targs[fit].mean(0), targs[fit].std(0)
            f_std[f_std == 0] = 1.0
            t_std[t_std == 0] = 1.0
        else:
            f_mean, f_std = np.zeros(feats.shape[1]), np.ones(feats.shape[1])
            t_mean, t_std = np.zeros(targs.shape[1]), np.ones(targs.shape[1])
        self.inputs = torch.from_numpy(((feats - f_mean) / f_std).astype(np.float32))
        self.targets = torch.from_numpy(((targs - t_mean) / t_std).astype(np.float32))
        self.feature_columns, self.target_columns = list(feature_columns), target_columns
        self.feature_mean, self.feature_std = f_mean.tolist(), f_std.tolist()
        self.target_mean, self.target_std = [float(x) for x in t_mean], [float(x) for x in t_std]
        self.num_features, self.num_targets = len(feature_columns), len(target_columns)
        self.input_length, self.horizon, self.stride = input_length, horizon, stride
        self.batch_size = batch_size
        self._loader_options = loader_options(num_workers, pin_memory)

    @staticmethod
    def _frame(ds: datasets.Dataset, columns: Sequence[str], time_column: str | None) -> np.ndarray:
        data = ds.with_format("numpy")[:]
        table = np.stack([np.asarray(data[c], dtype=np.float64) for c in columns], axis=1)
        if time_column is not None:
            table = table[np.argsort(data[time_column], kind="stable")]
        return table

    def windows(self, split: str) -> WindowDataset:
        """The windows whose targets lie in ``split``."""
        start, stop = self.boundaries[split]
        times = window_times(start, stop, self.input_length, self.horizon, self.stride)
        if times.numel() == 0:
            raise DataValidationError(
                f"split {split!r} has {stop - start} rows: no window of horizon {self.horizon} fits; "
                "use more data or a smaller horizon / validation_fraction / test_fraction"
            )
        return WindowDataset(self.inputs, self.targets, times, self.input_length, self.horizon)

    def predict_dataloader(self) -> DataLoader:
        """One window per ``.csv`` file of ``predict_files`` (or per line of a ``.jsonl`` file)."""
        collate = PredictWindowCollate(
            self.feature_columns, self.feature_mean, self.feature_std, self.predict_max_length
        )
        return predict_loader(self.predict_files, None, 1, collate, windows=True)

    def _loader(self, split: str, train: bool) -> DataLoader:
        return ResumableDataLoader(
            self.windows(split), batch_size=self.batch_size, shuffle=train, **self._loader_options
        )
