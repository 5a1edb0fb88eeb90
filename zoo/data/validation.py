"""Checks that data can be trained on, run while a data module is built (before any training step).

Each check handles one concern for every data module that needs it, and raises
:class:`~zoo.errors.DataValidationError` naming the split, the row (with the file and line it came from,
where that can be known) and the column, and saying what to fix. Files are re-read to find a line only
when an error is reported, so valid data costs one vectorised pass per check.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from zoo.data.locate import RowLocator, csv_record_lines
from zoo.errors import DataValidationError, ZooConfigError

log = logging.getLogger("zoo.data")

#: What a data module does with a row that has no text (or no words): stop with an error naming the rows,
#: or drop the rows and log how many.
EmptyPolicy = Literal["error", "drop"]


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad(split: str, where: str, column: str, problem: str) -> DataValidationError:
    return DataValidationError(f"split {split!r}, {where}, column {column!r}: {problem}")


def _rows(mask: pa.ChunkedArray | pa.Array) -> list[int]:
    """0-based indices where a boolean array is true (nulls count as false)."""
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()  # type: ignore[no-any-return]


def _column(ds: datasets.Dataset, column: str) -> pa.ChunkedArray:
    table = ds.with_format("arrow")[:]
    assert isinstance(table, pa.Table)
    return table.column(column)


# -- settings ---------------------------------------------------------------------------------------------
def check_max_length(max_length: int | None) -> None:
    """A length bound is a positive number of tokens (``None`` lifts the bound)."""
    if max_length is not None and (isinstance(max_length, bool) or max_length < 1):
        raise ZooConfigError(
            f"max_length must be a positive number of tokens, got {max_length!r}; set --data.max_length 256 "
            "(or null for no bound)"
        )


def check_empty_policy(policy: str) -> None:
    """``empty_texts`` is ``"error"`` or ``"drop"``."""
    if policy not in ("error", "drop"):
        raise ZooConfigError(f"empty_texts must be 'error' or 'drop', got {policy!r}")


# -- columns and labels -----------------------------------------------------------------------------------
def check_filled(splits: datasets.DatasetDict, column: str, locator: RowLocator) -> None:
    """Every row of every split has a value in ``column``.

    A column that one split's file lacks is read as all-empty (``datasets`` unifies the columns of the
    splits), so that case is named as a missing column.
    """
    for split, ds in splits.items():
        missing = _rows(pc.is_null(_column(ds, column)))
        if not missing:
            continue
        if len(missing) == len(ds):
            files = list(locator.files.get(split, ()))
            source = f" ({', '.join(files)})" if files else ""
            raise DataValidationError(
                f"split {split!r}{source}, column {column!r}: every one of its {len(ds)} rows is empty: the "
                f"file lacks the column or leaves it blank. Add the column to every split, or leave this "
                "split out of data_files"
            )
        raise _bad(
            split,
            locator.where(split, missing),
            column,
            "no value. Fill in every row, or delete the rows without one",
        )


def check_class_labels(
    splits: datasets.DatasetDict, column: str, locator: RowLocator
) -> datasets.DatasetDict:
    """Class labels are all integer ids or all names, with no empty cell; integral floats become ints.

    A CSV reader turns a label column with an empty cell into floats, and a column of real numbers is a
    regression target, not classes: both are refused with the rows named.

    Returns:
        the splits, with whole-number float labels cast to integers.
    """
    check_filled(splits, column, locator)
    kinds: dict[str, str] = {}
    out = {}
    for split, ds in splits.items():
        values = _column(ds, column)
        kind = values.type
        if pa.types.is_floating(kind):
            fractional = _rows(pc.not_equal(values, pc.floor(values)))
            if fractional:
                first = values[fractional[0]].as_py()
                raise _bad(
                    split,
                    locator.where(split, fractional),
                    column,
                    f"the label {first!r} is not a class. A classifier needs integer or string class labels; "
                    "to predict a number, use the Forecaster with TimeSeriesData (regression)",
                )
            ds = ds.cast_column(column, datasets.Value("int64"))
            kinds[split] = "integer ids"
        elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
            kinds[split] = "integer ids"
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            kinds[split] = "names"
        else:
            # mixed JSON values arrive as one column of JSON-encoded scalars
            decoded = [json.loads(v) if isinstance(v, str) else v for v in values.to_pylist()]
            not_class = [
                i for i, v in enumerate(decoded) if isinstance(v, bool) or not isinstance(v, int | str)
            ]
            if not_class:
                raise _bad(
                    split,
                    locator.where(split, not_class),
                    column,
                    f"the label {_short(decoded[not_class[0]])} is not a class label. Use integer ids or "
                    "names",
                )
            is_name = [isinstance(v, str) for v in decoded]
            odd = [i for i, flag in enumerate(is_name) if flag != is_name[0]]
            if odd:
                raise _bad(
                    split,
                    locator.where(split, odd),
                    column,
                    f"the label {decoded[odd[0]]!r} is not of the same kind as row 1's {decoded[0]!r}. Use "
                    "one kind of label throughout: all names or all integer ids",
                )
            kinds[split] = "names" if is_name[0] else "integer ids"
        out[split] = ds
    if len(set(kinds.values())) > 1:
        reference = kinds.get("train", next(iter(kinds.values())))
        odd_split = next(s for s, k in kinds.items() if k != reference)
        raise _bad(
            odd_split,
            locator.where(odd_split, [0]),
            column,
            f"the labels are {kinds[odd_split]} here but {reference} in split 'train'. Use one kind of "
            "label in every split: all names or all integer ids",
        )
    return datasets.DatasetDict(out)


def check_numbers(splits: datasets.DatasetDict, columns: Sequence[str], locator: RowLocator) -> None:
    """Every value of ``columns`` is a finite number (time-series features and targets)."""
    for column in columns:
        check_filled(splits, column, locator)
    for split, ds in splits.items():
        for column in columns:
            values = _column(ds, column)
            if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
                bad = [i for i, v in enumerate(values.to_pylist()) if not _is_number(v)]
                if not bad:
                    continue
                raise _bad(
                    split,
                    locator.where(split, bad),
                    column,
                    f"{_short(values[bad[0]].as_py())} is not a number. A time series column holds numbers: "
                    "fix the value, or leave the column out of feature_columns / target_columns",
                )
            if pa.types.is_floating(values.type):
                infinite = _rows(pc.invert(pc.is_finite(values)))
                if infinite:
                    raise _bad(
                        split,
                        locator.where(split, infinite),
                        column,
                        f"{values[infinite[0]].as_py()} is not a finite number; fill or drop those rows",
                    )


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


# -- texts ------------------------------------------------------------------------------------------------
def _apply_policy(
    splits: datasets.DatasetDict,
    empty: Mapping[str, list[int]],
    column: str,
    locator: RowLocator,
    policy: EmptyPolicy,
    what: str,
) -> datasets.DatasetDict:
    """Raise on the first split with empty rows, or drop them and log a count per split."""
    out = {}
    for split, ds in splits.items():
        rows = empty.get(split, [])
        if rows and policy == "error":
            raise _bad(
                split,
                locator.where(split, rows),
                column,
                f"{what}; {len(rows)} of {len(ds)} rows are like this. Remove those rows, or pass "
                "--data.empty_texts drop to drop them with a count logged",
            )
        if rows:
            drop = set(rows)
            ds = ds.select([i for i in range(len(ds)) if i not in drop])
            log_dropped(split, len(rows), len(rows) + len(ds), f"({what})")
        out[split] = ds
    result = datasets.DatasetDict(out)
    check_rows_left(result)
    return result


def check_texts(
    splits: datasets.DatasetDict, column: str, locator: RowLocator, policy: EmptyPolicy = "error"
) -> datasets.DatasetDict:
    """Every text is a string with something besides whitespace (a blank text cannot be classified).

    Returns:
        the splits, without the blank rows when ``policy`` is ``"drop"``.
    """
    empty, texts = {}, {}
    for split, ds in splits.items():
        values = _column(ds, column)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            # a CSV column of numbers arrives as numbers; as text it is their digits
            ds = ds.cast_column(column, datasets.Value("string"))
            values = _column(ds, column)
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0)
        empty[split] = _rows(pc.or_kleene(pc.is_null(values), blank))
        texts[split] = ds
    return _apply_policy(
        datasets.DatasetDict(texts), empty, column, locator, policy, "the text is empty or only whitespace"
    )


def check_word_rows(
    splits: datasets.DatasetDict,
    tokens_column: str,
    tags_column: str,
    locator: RowLocator,
    policy: EmptyPolicy = "error",
) -> datasets.DatasetDict:
    """Every row has as many tags as words, no missing tag, and at least one word.

    Returns:
        the splits, without the rows that have no words when ``policy`` is ``"drop"``.
    """
    empty = {}
    for split, ds in splits.items():
        for column in (tokens_column, tags_column):
            check_filled(datasets.DatasetDict({split: ds}), column, locator)
        words, tags = _column(ds, tokens_column), _column(ds, tags_column)
        unequal = _rows(pc.not_equal(pc.list_value_length(words), pc.list_value_length(tags)))
        if unequal:
            row = unequal[0]
            n_words, n_tags = len(words[row].as_py()), len(tags[row].as_py())
            raise _bad(
                split,
                locator.where(split, unequal),
                tags_column,
                f"{n_words} words but {n_tags} tags; every word needs exactly one tag",
            )
        for column, values, problem in (
            (tokens_column, words, "a missing word (null)"),
            (tags_column, tags, "a word without a tag (null)"),
        ):
            flat = pc.list_flatten(values)
            if flat.null_count:
                parents = pc.list_parent_indices(values)
                rows = sorted(set(pc.filter(parents, pc.is_null(flat)).to_pylist()))
                raise _bad(split, locator.where(split, rows), column, problem)
        empty[split] = _rows(pc.equal(pc.list_value_length(words), 0))
    return _apply_policy(splits, empty, tokens_column, locator, policy, "the row has no words")


def check_encoded(
    encoded: datasets.Dataset,
    raw: datasets.Dataset,
    split: str,
    column: str,
    policy: EmptyPolicy,
) -> tuple[datasets.Dataset, int]:
    """No sequence is empty after tokenisation (a tokenizer's normaliser can remove every character).

    Rows are counted within the split (a carved validation split has no line of its own), and the text is
    shown so that it can be found.

    Returns:
        the encoded split (without the empty rows when ``policy`` is ``"drop"``) and how many were dropped.
    """
    empty = _rows(pc.equal(_column(encoded, "length"), 0))
    if not empty:
        return encoded, 0
    if policy == "error":
        first = raw[empty[0]][column]
        raise _bad(
            split,
            RowLocator().where(split, empty),
            column,
            f"the tokenizer makes no tokens of {_short(first)}; {len(empty)} of {len(encoded)} rows are like "
            "this. Remove those rows, use another tokenizer, or pass --data.empty_texts drop",
        )
    drop = set(empty)
    kept = encoded.select([i for i in range(len(encoded)) if i not in drop])
    check_rows_left(datasets.DatasetDict({split: kept}))
    return kept, len(empty)


def check_stream(split: str, tokens: int, rows: int) -> None:
    """A language-model split has at least two tokens for each of the ``rows`` it is cut into."""
    if tokens // rows < 2:
        raise DataValidationError(
            f"split {split!r} has {tokens} tokens, too few to cut into {rows} rows of at least 2 tokens "
            "(batch_size rows per process); add text to the split or lower --data.batch_size"
        )


def check_rows_left(splits: datasets.DatasetDict, source: str = "the dataset") -> None:
    """Every split has at least one row."""
    empty = [name for name, ds in splits.items() if len(ds) == 0]
    if empty:
        raise DataValidationError(
            f"split(s) {empty} of {source} have no rows; check data_files, the split mapping and that each "
            "file holds rows below its header"
        )


# -- lengths ----------------------------------------------------------------------------------------------
def count_truncated(encoded: datasets.Dataset) -> int:
    """Rows of an encoded split that ``max_length`` cut (the map functions mark them ``truncated``)."""
    if "truncated" not in encoded.column_names:
        return 0
    return int(pc.sum(_column(encoded, "truncated")).as_py() or 0)


def log_truncation(split: str, truncated: int, total: int, max_length: int | None, unit: str) -> None:
    """One line per split: ``"train: 3 of 67349 texts truncated to 256 tokens"`` (a warning when any was)."""
    if max_length is None:
        return
    message = f"{split}: {truncated} of {total} {unit} truncated to {max_length} tokens"
    if truncated:
        _warn(message)
    else:
        _info(message)


def log_dropped(split: str, dropped: int, total: int, why: str) -> None:
    """One line per split: ``"train: dropped 3 of 40 rows (the text is empty or only whitespace)"``."""
    _warn(f"{split}: dropped {dropped} of {total} rows {why} (empty_texts=drop)")


@rank_zero_only
def _info(message: str) -> None:
    log.info(message)


@rank_zero_only
def _warn(message: str) -> None:
    log.warning(message)


# -- files that cannot be read ----------------------------------------------------------------------------
def utf8_problem(
    file: Path, encoding: str, fix: str = "or pass its encoding (--data.load_kwargs '{encoding: latin-1}')"
) -> str | None:
    """Where a file meant to be UTF-8 is not (the byte, its offset, line and column), or ``None``."""
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8", "utf-8-sig"):
        return None
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        return (
            f"{file} is not valid UTF-8: byte 0x{data[err.start]:02x} at byte offset {err.start} "
            f"(line {line}, column {column}) cannot be decoded ({err.reason}). Save the file as UTF-8, {fix}"
        )
    return None


def file_problem(file: str, kind: str, delimiter: str = ",", encoding: str = "utf-8") -> str | None:
    """What makes one local data file unreadable (empty, not UTF-8, a header without rows), or ``None``."""
    path = Path(file)
    if not path.is_file():
        return None
    if not path.read_bytes().strip(b"\xef\xbb\xbf \t\r\n"):
        return f"{file} is empty; it needs {'a header line and ' if kind == 'csv' else ''}at least one row"
    problem = utf8_problem(path, encoding)
    if problem is None and kind == "csv" and next(csv_record_lines(path, delimiter, encoding), None) is None:
        problem = f"{file} has a header line but no rows below it"
    return problem


def _root_message(err: BaseException) -> str:
    """The most specific message in an exception's chain (``datasets`` wraps the reader's error)."""
    found = err
    cause: BaseException | None = err
    while cause is not None:
        if not isinstance(cause, datasets.exceptions.DatasetGenerationError):
            found = cause
            break
        cause = cause.__cause__ or cause.__context__
    return f"{type(found).__name__}: {found}"


def explain_load_failure(
    err: BaseException,
    path: str,
    data_files: Mapping[str, Sequence[str]],
    load_kwargs: Mapping[str, Any],
    cache_dir: str | None,
) -> DataValidationError:
    """Turn ``datasets``' "An error occurred while generating the dataset" into the cause and its fix.

    Looks at each split's files (empty, not UTF-8, header only), then loads each split alone: a split that
    fails alone is named with its reader's error; when all load alone, the splits disagree on a column's
    type, and the first row of the odd split whose value does not fit is named.
    """
    delimiter = str(load_kwargs.get("delimiter") or load_kwargs.get("sep") or ",")
    encoding = str(load_kwargs.get("encoding") or "utf-8")
    for split, files in data_files.items():
        for file in files:
            problem = file_problem(file, path, delimiter, encoding)
            if problem:
                return DataValidationError(f"split {split!r}: {problem}")
    alone: dict[str, datasets.Dataset] = {}
    for split, files in data_files.items():
        try:
            loaded = datasets.load_dataset(
                path, data_files={split: list(files)}, cache_dir=cache_dir, **load_kwargs
            )
        except Exception as split_err:  # the reader's own error, whatever it is, is the message
            return DataValidationError(
                f"split {split!r} ({', '.join(files)}) cannot be read as {path}: {_root_message(split_err)}"
            )
        assert isinstance(loaded, datasets.DatasetDict)
        alone[split] = loaded[split]
    reference_split = next(iter(alone))
    reference = alone[reference_split].features
    for split, ds in alone.items():
        for column, feature in ds.features.items():
            if column in reference and reference[column] != feature:
                locator = RowLocator(
                    data_files, path, delimiter, encoding if encoding != "utf-8" else "utf-8-sig"
                )
                values = ds[column]
                odd = [i for i, v in enumerate(values) if not _parses_as(v, reference[column])]
                where = f", {locator.where(split, odd)} ({_short(values[odd[0]])})" if odd else ""
                return DataValidationError(
                    f"split {split!r}{where}, column {column!r}: its values are {_dtype(feature)} there but "
                    f"{_dtype(reference[column])} in split {reference_split!r}. Use one kind of value in "
                    "every split (for labels: all names or all integer ids)"
                )
    return DataValidationError(f"the data files of {path!r} cannot be read: {_root_message(err)}")


def _dtype(feature: Any) -> str:
    dtype = str(getattr(feature, "dtype", type(feature).__name__))
    if "string" in dtype:
        return "strings"
    return "integers" if dtype.startswith(("int", "uint")) else "numbers" if "float" in dtype else dtype


def _parses_as(value: Any, feature: Any) -> bool:
    dtype = _dtype(feature)
    if value is None:
        return True
    try:
        if dtype == "integers":
            int(str(value))
        elif dtype == "numbers":
            float(str(value))
    except ValueError:
        return False
    return True
