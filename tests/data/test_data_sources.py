"""The source loader: builders, split mapping and carving, CoNLL-U, column checks."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from data_support import SENTIMENT_ROWS, write_csv

from zoo.data.sources import ConlluFormatError, check_columns, iter_conllu, load_splits, read_conllu


def test_conllu_reader_skips_comments_ranges_and_empty_nodes(conllu_file: Path) -> None:
    sentences = list(iter_conllu(conllu_file))
    assert sentences == [
        {"tokens": ["I", "do", "n't", "know", "."], "upos": ["PRON", "AUX", "PART", "VERB", "PUNCT"]},
        {"tokens": ["Go", "home"], "upos": ["VERB", "ADV"]},
    ]
    ds = read_conllu(conllu_file)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["tokens", "upos"]
    assert ds[1] == {"tokens": ["Go", "home"], "upos": ["VERB", "ADV"]}


def test_conllu_bad_line_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conllu"
    bad.write_text(
        "# sent_id = 1\n1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n2\tgo\tgo\tVERB\n\n", encoding="utf-8"
    )
    with pytest.raises(ConlluFormatError, match=r"bad\.conllu:3: expected 10 tab-separated fields, found 4"):
        list(iter_conllu(bad))
    with pytest.raises(ConlluFormatError, match=r"bad\.conllu:3"):
        read_conllu(bad, cache_dir=str(tmp_path / "cache"))


def test_conllu_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.conllu"):
        read_conllu(tmp_path / "nope.conllu")


def test_builder_with_dev_alias_and_split_map(tmp_path: Path) -> None:
    files = {
        "train": str(write_csv(tmp_path / "a.csv", SENTIMENT_ROWS)),
        "dev": str(write_csv(tmp_path / "b.csv", SENTIMENT_ROWS[:3])),
    }
    splits = load_splits("csv", files, cache_dir=str(tmp_path / "c"))
    assert set(splits) == {"train", "validation"}
    assert len(splits["validation"]) == 3
    splits = load_splits("csv", files, split_map={"test": "dev"}, cache_dir=str(tmp_path / "c"))
    assert len(splits["test"]) == 3 and "validation" in splits  # validation carved from train
    with pytest.raises(ValueError, match="lacks; it has"):
        load_splits("csv", files, split_map={"test": "heldout"}, cache_dir=str(tmp_path / "c"))


def test_validation_carved_from_train_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rows = [(f"text number {i}", i % 2) for i in range(100)]
    files = {"train": str(write_csv(tmp_path / "t.csv", rows))}
    a = load_splits("csv", files, validation_fraction=0.2, seed=3, cache_dir=str(tmp_path / "c"))
    b = load_splits("csv", files, validation_fraction=0.2, seed=3, cache_dir=str(tmp_path / "c"))
    c = load_splits("csv", files, validation_fraction=0.2, seed=4, cache_dir=str(tmp_path / "c"))
    assert len(a["validation"]) == 20 and len(a["train"]) == 80
    assert a["validation"]["text"] == b["validation"]["text"]
    assert a["validation"]["text"] != c["validation"]["text"]
    assert not set(a["validation"]["text"]) & set(a["train"]["text"])
    ordered = load_splits(
        "csv", files, validation_fraction=0.2, shuffle_carve=False, cache_dir=str(tmp_path / "c")
    )
    assert ordered["validation"]["text"] == [f"text number {i}" for i in range(80, 100)]


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    files = {
        "train": str(write_csv(tmp_path / "a.csv", SENTIMENT_ROWS)),
        "validation": str(write_csv(tmp_path / "b.csv", [])),
    }
    with pytest.raises(ValueError, match=r"split.*empty.*validation"):
        load_splits("csv", files, cache_dir=str(tmp_path / "c"))


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    splits = load_splits(
        "csv", {"train": str(write_csv(tmp_path / "a.csv", SENTIMENT_ROWS))}, cache_dir=str(tmp_path)
    )
    with pytest.raises(ValueError, match=r"\['sentence'\].*the columns there are \['text', 'label'\]"):
        check_columns(splits, ["sentence", "label"])


def test_empty_conllu_split_is_an_error(tmp_path: Path, conllu_file: Path) -> None:
    empty = tmp_path / "empty.conllu"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty: no sentences.*empty.conllu"):
        load_splits("conllu", {"train": str(conllu_file), "test": str(empty)}, cache_dir=str(tmp_path / "c"))
