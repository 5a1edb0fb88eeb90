"""Inputs to predict on, read lazily from files: ``zoo predict`` and the data modules' ``predict_dataloader``.

A ``.txt`` file gives one input per line; a ``.csv`` or ``.jsonl`` file one input per row, from its ``column``
(a JSON line may also be a bare string, or for a forecaster a bare window). Rows are read one at a time
from a binary handle, so a file larger than memory can be predicted, and the bytes read so far drive a
progress bar. A forecaster reads a ``.csv`` file as one window (rows = time steps).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

from zoo.errors import ZooConfigError

INPUT_SUFFIXES = (".txt", ".csv", ".jsonl")


def check_input_file(path: str | Path) -> Path:
    """``path`` as a readable input file of a known format, or a :class:`ZooConfigError` saying why not."""
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise ZooConfigError(f"input file {file} {what}. Give a .txt, .csv or .jsonl file to predict on.")
    if file.suffix.lower() not in INPUT_SUFFIXES:
        raise ZooConfigError(
            f"input file {file} has suffix {file.suffix!r}; give a .txt (one input per line), .csv or "
            ".jsonl file (--column names the input's column)."
        )
    return file


def _lines(handle: io.BufferedReader, progress: Callable[[int], Any] | None) -> Iterator[str]:
    for raw in handle:
        if progress is not None:
            progress(len(raw))
        yield raw.decode("utf-8", errors="replace")


def iter_inputs(
    path: str | Path,
    column: str | None = None,
    progress: Callable[[int], Any] | None = None,
    windows: bool = False,
) -> Iterator[Any]:
    """Yield the inputs of a file one at a time, in order (texts; windows with ``windows``).

    Args:
        path: a ``.txt``, ``.csv`` or ``.jsonl`` file.
        column: the column of a ``.csv`` file or the key of each JSON line (default ``text``); a forecaster's
            ``.csv`` uses its feature columns instead.
        progress: called with the number of bytes of each line read.
        windows: read forecasting windows: a ``.csv`` file is one window (a ``pandas.DataFrame``), each
            line of a ``.jsonl`` or ``.txt`` file a JSON array of rows.

    Raises:
        ZooConfigError: the file is missing, of an unknown format, or has no such column (checked on the
            header of a ``.csv`` file and on the first JSON line, before anything is predicted).
    """
    file = check_input_file(path)
    suffix = file.suffix.lower()
    if windows and suffix == ".csv":
        import pandas as pd

        if progress is not None:
            progress(file.stat().st_size)
        yield pd.read_csv(file)
        return
    with file.open("rb") as handle:
        lines = _lines(handle, progress)
        if suffix == ".csv":
            yield from _csv_values(file, lines, column or "text")
        elif suffix == ".jsonl":
            yield from _json_values(file, lines, column or "text", windows)
        else:
            for number, line in enumerate(lines, start=1):
                text = line.rstrip("\r\n")
                yield _json_window(f"{file}, line {number}", text) if windows else text


def _csv_values(file: Path, lines: Iterable[str], column: str) -> Iterator[str]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    if column not in header:
        raise ZooConfigError(
            f"{file} has no column {column!r}; its columns are {header}. Pass --column with one of them."
        )
    index = header.index(column)
    for row in reader:
        yield row[index] if index < len(row) else ""


def _json_values(file: Path, lines: Iterable[str], column: str, windows: bool) -> Iterator[Any]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ZooConfigError(
                f"{file}, line {number} is not JSON ({err}). Write one JSON value per line."
            ) from None
        if isinstance(record, dict):
            if column not in record:
                raise ZooConfigError(
                    f"{file}, line {number} has no key {column!r}; its keys are {sorted(record)}. Pass "
                    "--column with one of them."
                )
            record = record[column]
        if windows or isinstance(record, str):
            yield record
        else:
            raise ZooConfigError(
                f"{file}, line {number}: {column!r} holds {type(record).__name__}, not a string."
            )


def _json_window(where: str, text: str) -> Any:
    """A forecasting window written as JSON (``[[x, ...], ...]``: rows = time steps)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ZooConfigError(
            f"{where} is not a JSON window ({err}). Write one window per line as [[x, ...], ...]."
        ) from None


def predict_files_of(files: str | Sequence[str] | None) -> list[str]:
    """The ``predict_files`` option of a data module as a list, each file checked to exist."""
    if files is None:
        return []
    found = [files] if isinstance(files, str) else [str(f) for f in files]
    for file in found:
        check_input_file(file)
    return found


class PredictInputs(IterableDataset):
    """The inputs of ``predict_files``, read lazily, file after file (see :func:`iter_inputs`)."""

    def __init__(self, files: Sequence[str], column: str | None, windows: bool = False) -> None:
        self.files, self.column, self.windows = list(files), column, windows

    def __iter__(self) -> Iterator[Any]:
        for file in self.files:
            yield from iter_inputs(file, self.column, windows=self.windows)


class PredictTextCollate:
    """Raw texts -> a predict batch (:func:`zoo.tracking.predict.encode_texts`), as ``zoo.Predictor``
    builds it."""

    def __init__(self, tokenizer: Any, max_length: int, pad_id: int, keep_end: bool = False) -> None:
        from zoo.data.tokenizers import plain

        self.tokenizer = plain(tokenizer)
        self.max_length, self.pad_id, self.keep_end = max_length, pad_id, keep_end

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        from zoo.tracking.predict import encode_texts

        return encode_texts(self.tokenizer, texts, self.max_length, self.pad_id, self.keep_end)


class PredictWindowCollate:
    """One raw window (a ``.csv`` file, or a JSON array) -> ``{"inputs": Float[1, T, F]}``, selected and
    standardised as ``zoo.Predictor`` does."""

    def __init__(self, feature_columns: Sequence[str], mean: Any, std: Any, max_length: int) -> None:
        self.feature_columns, self.mean, self.std = list(feature_columns), mean, std
        self.max_length = max_length

    def __call__(self, windows: list[Any]) -> dict[str, Any]:
        import torch

        from zoo.tracking.predict import PredictInputError, prepare_window

        (window,) = windows
        try:
            values = prepare_window(
                window, len(self.feature_columns), self.max_length, self.mean, self.std, self.feature_columns
            )
        except PredictInputError as err:
            raise ZooConfigError(f"{err}; the model reads the features {self.feature_columns}") from None
        return {"inputs": torch.from_numpy(values).unsqueeze(0)}


def predict_loader(
    files: Sequence[str],
    column: str | None,
    batch_size: int,
    collate: Callable[[list[Any]], Any],
    windows: bool = False,
) -> DataLoader:
    """A loader over the inputs of ``predict_files``, in order, ``batch_size`` inputs per batch."""
    if not files:
        raise ZooConfigError(
            "nothing to predict: pass --data.predict_files FILE (a .txt file with one input per line, or a "
            ".csv/.jsonl file with a text column)."
        )
    return DataLoader(PredictInputs(files, column, windows), batch_size=batch_size, collate_fn=collate)
