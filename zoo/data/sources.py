"""One loader for Hugging Face hub names, local files (csv, json, parquet, text) and CoNLL-U.

``load_splits("glue", name="sst2")`` and ``load_splits("csv", data_files={...})`` go through
``datasets.load_dataset``; ``load_splits("conllu", data_files={...})`` reads CoNLL-U files into a
``datasets.Dataset`` of ``tokens`` and ``upos`` columns. Split names are mapped to ``train``,
``validation`` and ``test``, and a missing validation split is carved, seeded, from a slice of train.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from zoo.data.validation import check_rows_left, explain_load_failure, utf8_problem
from zoo.errors import DataValidationError, ZooConfigError

STANDARD_SPLITS = ("train", "validation", "test")
# Names that datasets on the hub and in the wild use for the same three splits.
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation", "eval": "validation"}

#: ``datasets`` builders that read local files named by ``data_files``.
_FILE_BUILDERS = ("csv", "json", "parquet", "text", "arrow")

DataFiles = str | Sequence[str] | Mapping[str, str | Sequence[str]]


class ConlluFormatError(DataValidationError):
    """A CoNLL-U file that breaks the format (or is not UTF-8); the message names the file and line."""


def _files_of(data_files: str | Sequence[str]) -> list[str]:
    return [data_files] if isinstance(data_files, str | os.PathLike) else [str(f) for f in data_files]


def iter_conllu(path: str | os.PathLike[str]) -> Iterator[dict[str, list[str]]]:
    """Yield ``{"tokens": [...], "upos": [...]}`` per sentence of a CoNLL-U file.

    Comment lines, multiword-token ranges (ID ``1-2``) and empty nodes (ID ``8.1``) are skipped, so every
    word carries exactly one UPOS tag.

    A byte-order mark at the start of the file is skipped.

    Raises:
        ConlluFormatError: a word line without 10 tab-separated fields, or bytes that are not UTF-8 (names
            the file, the line and the byte offset).
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL-U file not found: {path}")
    problem = utf8_problem(path, "utf-8", fix="e.g. with `iconv -f latin1 -t utf-8`")
    if problem:
        raise ConlluFormatError(problem)
    tokens: list[str] = []
    upos: list[str] = []
    with path.open(encoding="utf-8-sig") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                if tokens:
                    yield {"tokens": tokens, "upos": upos}
                    tokens, upos = [], []
                continue
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise ConlluFormatError(
                    f"{path}:{lineno}: expected 10 tab-separated fields, found {len(fields)}: {line[:80]!r}"
                )
            word_id = fields[0]
            if "-" in word_id or "." in word_id:
                continue
            tokens.append(fields[1])
            upos.append(fields[3])
    if tokens:
        yield {"tokens": tokens, "upos": upos}


def _conllu_generator(files: list[str], signature: list[tuple[int, int]]) -> Iterator[dict[str, list[str]]]:
    # ``signature`` (size, mtime) only feeds the cache fingerprint, so an edited file is read again.
    del signature
    for file in files:
        yield from iter_conllu(file)


def read_conllu(data_files: str | Sequence[str], cache_dir: str | None = None) -> datasets.Dataset:
    """Read one or more CoNLL-U files into a ``datasets.Dataset`` with ``tokens`` and ``upos`` columns.

    The result is written to the datasets cache (keyed by the paths, sizes and modification times), so
    later ``map`` calls on it are cached by fingerprint like any other dataset.
    """
    files = [str(Path(f).resolve()) for f in _files_of(data_files)]
    for file in files:
        if not Path(file).is_file():
            raise FileNotFoundError(f"CoNLL-U file not found: {file}")
    signature = [(Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "upos": datasets.Sequence(datasets.Value("string")),
        }
    )
    try:
        ds = datasets.Dataset.from_generator(
            _conllu_generator,
            gen_kwargs={"files": files, "signature": signature},
            features=features,
            cache_dir=cache_dir,
        )
    except Exception as err:  # datasets wraps generator errors; surface ours with its line number
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConlluFormatError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise ConlluFormatError(str(cause)) from err
        if "corresponds to no data" in str(err):
            raise DataValidationError(
                f"the split is empty: no sentences in the CoNLL-U file(s) {files}"
            ) from err
        raise
    assert isinstance(ds, datasets.Dataset)
    return ds


def _normalise_split_name(name: str) -> str:
    return _SPLIT_ALIASES.get(name, name)


def _files_by_split(data_files: DataFiles) -> dict[str, list[str]]:
    """The dataset's own split names -> files (one unnamed list is ``train``, as ``datasets`` reads it)."""
    if isinstance(data_files, Mapping):
        return {split: _files_of(files) for split, files in data_files.items()}
    return {"train": _files_of(data_files)}


def split_files(
    data_files: DataFiles | None, split_map: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Our split name -> its data files, as :func:`load_splits` maps them (no carving, no globbing)."""
    if data_files is None:
        return {}
    theirs = _files_by_split(data_files)
    ours = {mine: theirs[src] for mine, src in (split_map or {}).items() if src in theirs}
    for name, files in theirs.items():
        if name not in (split_map or {}).values():
            ours.setdefault(_normalise_split_name(name), files)
    return ours


def _check_data_files(path: str, data_files: DataFiles | None) -> None:
    if path in (*_FILE_BUILDERS, "conllu") and data_files is None:
        raise ZooConfigError(
            f"path={path!r} reads local files but no data_files were given: pass --data.data_files FILE, or "
            "a dict of split to file ('{train: a.csv, validation: b.csv}')"
        )


def _load_builder(
    path: str,
    name: str | None,
    data_files: DataFiles | None,
    cache_dir: str | None,
    load_kwargs: dict[str, Any],
) -> datasets.DatasetDict:
    """``datasets.load_dataset`` with its errors turned into what to fix."""
    _check_data_files(path, data_files)
    if path == "text":
        # the text builder keeps a byte-order mark as the first character of the first line
        load_kwargs.setdefault("encoding", "utf-8-sig")
    try:
        loaded = datasets.load_dataset(path, name, data_files=data_files, cache_dir=cache_dir, **load_kwargs)
    except ConnectionError as err:
        raise _hub_unavailable(path, name, cache_dir) from err
    except datasets.exceptions.DatasetGenerationError as err:
        files = _files_by_split(data_files) if data_files is not None else {}
        raise explain_load_failure(err, path, files, load_kwargs, cache_dir) from err
    except ValueError as err:
        if "corresponds to no data" not in str(err):
            raise
        # datasets' own wording ("Instruction 'x' corresponds to no data!") does not say what to fix
        raise DataValidationError(
            f"a split of {path!r} is empty ({err}); check data_files and the split mapping"
        ) from err
    if not isinstance(loaded, datasets.DatasetDict):
        raise TypeError(f"expected a DatasetDict from load_dataset({path!r}), got {type(loaded).__name__}")
    return loaded


def _hub_unavailable(path: str, name: str | None, cache_dir: str | None) -> ZooConfigError:
    """What to do when ``datasets`` can neither reach the hub nor find ``path`` in its cache."""
    from zoo.data.tokenizers import hub_offline

    what = f"{path!r}" + (f" (configuration {name!r})" if name else "")
    cache = cache_dir or datasets.config.HF_DATASETS_CACHE
    get_it = (
        "run the command once with network access so that datasets caches it, or download the files and "
        "pass them with --data.path csv|json|parquet|text --data.data_files FILE"
    )
    if hub_offline():
        return ZooConfigError(
            f"dataset {what} is not in the datasets cache {cache} and HF_HUB_OFFLINE is set: {get_it}"
        )
    return ZooConfigError(
        f"dataset {what} could not be fetched from the Hugging Face hub and is not in the datasets cache "
        f"{cache}: check the name and the network, or {get_it}"
    )


def carve_split(
    splits: Mapping[str, datasets.Dataset],
    validation_fraction: float,
    seed: int = 0,
    shuffle: bool = True,
) -> datasets.DatasetDict:
    """Add a ``validation`` split carved from train when there is none (seeded, or its last rows in order).

    Raises:
        ZooConfigError: ``validation_fraction`` outside (0, 1).
    """
    out = dict(splits)
    if "validation" in out:
        return datasets.DatasetDict(out)
    if not 0.0 < validation_fraction < 1.0:
        raise ZooConfigError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    train = out["train"]
    if shuffle:
        parts = train.train_test_split(test_size=validation_fraction, seed=seed, shuffle=True)
        out["train"], out["validation"] = parts["train"], parts["test"]
    else:
        n_val = max(1, round(len(train) * validation_fraction))
        out["validation"] = train.select(range(len(train) - n_val, len(train)))
        out["train"] = train.select(range(len(train) - n_val))
    result = datasets.DatasetDict(out)
    check_rows_left(result, source="the dataset after carving validation from train")
    return result


def load_splits(
    path: str,
    data_files: DataFiles | None = None,
    name: str | None = None,
    *,
    split_map: Mapping[str, str] | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    shuffle_carve: bool = True,
    carve_validation: bool = True,
    cache_dir: str | None = None,
    **load_kwargs: Any,
) -> datasets.DatasetDict:
    """Load a dataset as a ``DatasetDict`` with ``train`` and ``validation`` (and ``test`` when present).

    Args:
        path: a hub name (``"stanfordnlp/sst2"``), a builder (``"csv"``, ``"json"``, ``"parquet"``,
            ``"text"``) or ``"conllu"`` for CoNLL-U files.
        data_files: files for a builder, as ``datasets.load_dataset`` takes them (a dict maps split names).
        name: the dataset's configuration name, if it has several.
        split_map: our split name -> the dataset's, e.g. ``{"validation": "dev"}``. Common aliases
            (``dev``, ``valid``, ``val``) are recognised without it.
        validation_fraction: share of train carved out as validation when the dataset has none.
        seed: seed of that carve.
        shuffle_carve: ``False`` takes the last rows of train in order (time series).
        carve_validation: carve a validation split when there is none (``False``: leave it missing).
        cache_dir: datasets cache directory (``None``: the datasets default).
        **load_kwargs: passed to ``datasets.load_dataset`` (e.g. ``delimiter="\\t"``).

    Raises:
        DataValidationError: a file that cannot be read (empty, not UTF-8, a header without rows, splits
            whose columns hold different types), with the split and the cause; or an empty split.
        ZooConfigError: no train split, or an unknown split in ``split_map``.
    """
    if path == "conllu":
        _check_data_files(path, data_files)
        assert data_files is not None  # for mypy: checked just above
        raw = datasets.DatasetDict()
        for split, files in _files_by_split(data_files).items():
            try:
                raw[split] = read_conllu(files, cache_dir=cache_dir)
            except DataValidationError as err:
                raise type(err)(f"split {split!r}: {err}") from err
    else:
        raw = _load_builder(path, name, data_files, cache_dir, dict(load_kwargs))

    if split_map:
        unknown = [src for src in split_map.values() if src not in raw]
        if unknown:
            raise ZooConfigError(f"split_map names splits {unknown} that {path!r} lacks; it has {list(raw)}")
        splits = {ours: raw[theirs] for ours, theirs in split_map.items()}
        for theirs in raw:
            ours = _normalise_split_name(theirs)
            if ours not in splits and theirs not in split_map.values():
                splits[ours] = raw[theirs]
    else:
        splits = {_normalise_split_name(s): raw[s] for s in raw}

    if "train" not in splits:
        raise ZooConfigError(
            f"{path!r} has no train split; it has {list(raw)}. Map one with split_map={{'train': ...}}"
        )
    check_rows_left(datasets.DatasetDict(splits), source=path)
    if carve_validation:
        return carve_split(splits, validation_fraction, seed=seed, shuffle=shuffle_carve)
    return datasets.DatasetDict(splits)


def check_not_empty(splits: datasets.DatasetDict, source: str = "the dataset") -> None:
    """Raise ``DataValidationError`` naming any split with no rows."""
    check_rows_left(splits, source)


def check_columns(
    ds: datasets.Dataset | datasets.DatasetDict, columns: Sequence[str], what: str = ""
) -> None:
    """Raise ``DataValidationError`` when a column is missing, listing the columns there are."""
    parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [("data", ds)]
    for split, d in parts:
        missing = [c for c in columns if c not in d.column_names]
        if missing:
            hint = f" for {what}" if what else ""
            raise DataValidationError(
                f"column(s) {missing}{hint} not in split {split!r}; the columns there are {d.column_names}"
            )


def select_columns(splits: datasets.DatasetDict, columns: Sequence[str]) -> datasets.DatasetDict:
    """Keep only ``columns`` in every split (after checking that they exist)."""
    check_columns(splits, columns)
    return datasets.DatasetDict({k: v.select_columns(list(columns)) for k, v in splits.items()})
