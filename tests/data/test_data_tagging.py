"""Token tagging data: CoNLL-U and list columns, one id and one tag per word, padding ignored."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from zoo.data.tagging import TokenTaggingData
from zoo.errors import DataValidationError


def test_conllu_tagging_batches(conllu_file: Path, tmp_path: Path) -> None:
    files = {"train": str(conllu_file), "validation": str(conllu_file)}
    dm = TokenTaggingData("conllu", files, batch_size=2, bucket=False, cache_dir=str(tmp_path / "c"))
    assert dm.tag_names == ["ADV", "AUX", "PART", "PRON", "PUNCT", "VERB"] and dm.num_tags == 6
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"input_ids", "lengths", "tags"}
    assert batch["lengths"].tolist() == [5, 2]
    assert batch["tags"][1].tolist() == [5, 0, -100, -100, -100]
    assert batch["input_ids"][1, 2:].tolist() == [dm.pad_id] * 3
    words = [dm.tokenizer.id_to_token(i) for i in batch["input_ids"][0].tolist()]
    assert words == ["I", "do", "n't", "know", "."]


def test_list_columns_one_id_per_word_and_unknown_words(tmp_path: Path) -> None:
    rows = [
        {"words": ["New York", "is", "big"], "ner": ["LOC", "O", "O"]},
        {"words": ["Paris", "is", "old"], "ner": ["LOC", "O", "O"]},
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"words": ["Rome", "is", "big"], "ner": ["LOC", "O", "O"]}), encoding="utf-8")
    dm = TokenTaggingData(
        "json",
        {"train": str(train), "validation": str(train), "test": str(test)},
        tokens_column="words",
        tags_column="ner",
        lowercase=True,
        cache_dir=str(tmp_path / "c"),
    )
    batch = next(iter(dm.test_dataloader()))
    assert batch["input_ids"].shape == batch["tags"].shape == (1, 3)
    assert batch["input_ids"][0, 0] == dm.tokenizer.token_to_id("<unk>")
    batch = next(iter(dm.val_dataloader()))
    assert batch["lengths"].tolist() == [3, 3], "a word with a space still gets exactly one id"


def test_bad_tagging_input(conllu_file: Path, tmp_path: Path) -> None:
    files = {"train": str(conllu_file)}
    with pytest.raises(
        DataValidationError,
        match=r"tags \['ADV', 'AUX', 'PART', 'PUNCT'\] in split 'train' are outside the tag set "
        r"\['PRON', 'VERB'\] "
        r"\(rows 1 \(.*tiny\.conllu line 1\), 2 \(.*tiny\.conllu line 12\), column 'upos'\)",
    ):
        TokenTaggingData("conllu", files, tag_set=["PRON", "VERB"], cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=re.escape("the columns there are ['tokens', 'upos']")):
        TokenTaggingData("conllu", files, tags_column="xpos", cache_dir=str(tmp_path))
    mismatch = tmp_path / "m.jsonl"
    mismatch.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["X"]}), encoding="utf-8")
    with pytest.raises(
        DataValidationError,
        match=re.escape("split 'train', row 1 (") + r".*m\.jsonl line 1\), column 'tags': 2 words but 1 tags",
    ):
        TokenTaggingData(
            "json", {"train": str(mismatch), "validation": str(mismatch)}, cache_dir=str(tmp_path)
        )


def test_integer_tags_with_class_label_names(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"tokens": [["John", "Smith", "runs"], ["Mary", "sleeps"]], "tags": [[1, 2, 0], [1, 0]]},
        features=features,
    )
    ds.to_parquet(str(tmp_path / "t.parquet"))  # parquet keeps the ClassLabel names in its metadata
    files = {"train": str(tmp_path / "t.parquet"), "validation": str(tmp_path / "t.parquet")}
    dm = TokenTaggingData("parquet", files, bucket=False, batch_size=2, cache_dir=str(tmp_path / "c"))
    assert dm.tag_names == ["O", "B-PER", "I-PER"]
    batch = next(iter(dm.val_dataloader()))
    assert batch["tags"].tolist() == [[1, 2, 0], [1, 0, -100]]


def test_chars_give_each_words_character_ids_from_the_training_characters(tmp_path: Path) -> None:
    from zoo.data.chars import CHAR_PAD_ID, CHAR_UNK_ID

    train = tmp_path / "train.jsonl"
    train.write_text(
        "\n".join(json.dumps(r) for r in [{"w": ["ab", "b"], "t": ["X", "Y"]}, {"w": ["ba"], "t": ["Y"]}]),
        encoding="utf-8",
    )
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"w": ["abz", "a", "bbbbbba"], "t": ["X", "Y", "X"]}), encoding="utf-8")
    dm = TokenTaggingData(
        "json",
        {"train": str(train), "validation": str(train), "test": str(test)},
        tokens_column="w",
        tags_column="t",
        chars=True,
        max_word_chars=4,
        batch_size=2,
        bucket=False,
        cache_dir=str(tmp_path / "c"),
    )
    assert dm.char_vocab == ["<pad>", "<unk>", "a", "b"], "characters of the training words only"
    a, b = 2, 3
    test_batch = next(iter(dm.test_dataloader()))
    assert test_batch["char_ids"].view(1, 3, 4).tolist() == [
        [[a, b, CHAR_UNK_ID, CHAR_PAD_ID], [a, CHAR_PAD_ID, CHAR_PAD_ID, CHAR_PAD_ID], [b, b, b, a]]
    ]
    val = next(iter(dm.val_dataloader()))
    assert val["char_ids"].shape == (2, 2 * 4), "sentences padded to the longest, 4 characters a word"
    assert val["char_ids"][1, 4:].tolist() == [CHAR_PAD_ID] * 4
    words_only = TokenTaggingData(
        "json",
        {"train": str(train), "validation": str(train)},
        tokens_column="w",
        tags_column="t",
        cache_dir=str(tmp_path / "c"),
    )
    assert words_only.char_vocab is None and "char_ids" not in next(iter(words_only.val_dataloader()))
    with pytest.raises(ValueError, match="max_word_chars must be an integer of at least 2"):
        TokenTaggingData(
            "json", {"train": str(train)}, tokens_column="w", tags_column="t", chars=True, max_word_chars=1
        )
