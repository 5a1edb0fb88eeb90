"""Text classification and language-modelling data modules on small local files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from data_support import SENTIMENT_ROWS, write_csv

from zoo.data import tokenizers as ztok
from zoo.data.encoding import EncodeText
from zoo.data.text import LanguageModelingData, TextClassificationData


def test_classification_batches_and_attributes(sentiment_files: dict[str, str], tmp_path: Path) -> None:
    dm = TextClassificationData("csv", sentiment_files, batch_size=4, cache_dir=str(tmp_path / "cache"))
    # everything a model needs is known right after __init__
    assert dm.label_names == ["neg", "pos"] and dm.num_classes == 2
    assert dm.pad_id == 0 and dm.tokenizer.token_to_id("<pad>") == 0
    assert dm.tokenizer_path.is_file() and dm.tokenizer_path.name == "tokenizer.json"
    assert dm.vocab_size == dm.tokenizer.get_vocab_size()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "lengths", "labels"}
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape[0] == 4
    assert int(batch["lengths"].max()) == batch["input_ids"].shape[1], "padded to the batch's longest"
    for row, n in zip(batch["input_ids"], batch["lengths"], strict=True):
        assert (row[n:] == dm.pad_id).all() and (row[:n] != dm.pad_id).all()
    test = next(iter(dm.test_dataloader()))
    texts = {dm.tokenizer.decode(r[:n].tolist()): int(y) for r, n, y in zip(*test.values(), strict=False)}
    expected = {t: dm.label_names.index(y) for t, y in SENTIMENT_ROWS[4:]}
    assert texts == expected


def test_declared_labels_as_ids_and_names(tmp_path: Path) -> None:
    rows = [("good film", 1), ("bad film", 0), ("fine film", 2)] * 3
    files = {"train": str(write_csv(tmp_path / "t.csv", rows))}
    dm = TextClassificationData(
        "csv",
        files,
        label_set=["neg", "pos", "mixed"],
        cache_dir=str(tmp_path / "c"),
        validation_fraction=0.3,
    )
    assert dm.num_classes == 3 and dm.label_names == ["neg", "pos", "mixed"]
    undeclared = TextClassificationData("csv", files, cache_dir=str(tmp_path / "c"), validation_fraction=0.3)
    assert undeclared.label_names == ["0", "1", "2"]


def test_labels_outside_the_declared_set(sentiment_files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"labels \['pos'\] in split 'train' are outside the label set \['neg'"
    ):
        TextClassificationData("csv", sentiment_files, label_set=["neg", "neutral"], cache_dir=str(tmp_path))
    files = dict(sentiment_files)
    files["test"] = str(write_csv(tmp_path / "odd.csv", [("meh", "neutral")]))
    with pytest.raises(ValueError, match=r"\['neutral'\] in split 'test'"):
        TextClassificationData("csv", files, cache_dir=str(tmp_path))


def test_missing_text_column_lists_columns(sentiment_files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("the columns there are ['text', 'label']")):
        TextClassificationData("csv", sentiment_files, text_column="sentence", cache_dir=str(tmp_path))


def test_missing_tokenizer_file(sentiment_files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "gone.json"))):
        TextClassificationData(
            "csv", sentiment_files, tokenizer_file=str(tmp_path / "gone.json"), cache_dir=str(tmp_path)
        )


def test_second_construction_reuses_tokenizer_and_map_cache(
    sentiment_files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = str(tmp_path / "cache")
    first = TextClassificationData("csv", sentiment_files, cache_dir=cache)
    first.prepare_data()
    first.setup("fit")
    files_before = {f["filename"] for f in first.encoded["train"].cache_files}

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("tokenizer retrained")

    def no_map(self: EncodeText, batch: object) -> None:
        raise AssertionError("map re-ran instead of loading its cache")

    monkeypatch.setattr(ztok, "train_tokenizer", no_training)
    monkeypatch.setattr(EncodeText, "__call__", no_map)
    second = TextClassificationData("csv", sentiment_files, cache_dir=cache)
    second.setup("fit")
    assert second.tokenizer_path == first.tokenizer_path
    assert {f["filename"] for f in second.encoded["train"].cache_files} == files_before
    assert second.encoded["train"][:] == first.encoded["train"][:]


def test_a_given_tokenizer_file_and_pretrained_path(sentiment_files: dict[str, str], tmp_path: Path) -> None:
    first = TextClassificationData(
        "csv", sentiment_files, tokenizer_type="char", cache_dir=str(tmp_path / "a")
    )
    by_file = TextClassificationData(
        "csv", sentiment_files, tokenizer_file=str(first.tokenizer_path), cache_dir=str(tmp_path / "b")
    )
    by_name = TextClassificationData(
        "csv", sentiment_files, pretrained_tokenizer=str(first.tokenizer_path), cache_dir=str(tmp_path / "c")
    )
    assert by_file.tokenizer.get_vocab() == by_name.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    assert by_name.tokenizer_path.is_file()


def test_truncation_by_max_length(sentiment_files: dict[str, str], tmp_path: Path) -> None:
    dm = TextClassificationData("csv", sentiment_files, max_length=2, batch_size=64, cache_dir=str(tmp_path))
    batch = next(iter(dm.train_dataloader()))
    assert int(batch["lengths"].max()) == 2


@pytest.fixture
def lm_files(tmp_path: Path) -> dict[str, str]:
    words = ["the", "cat", "sat", "on", "the", "mat", "and", "the", "dog", "ran", "after", "it"]
    lines = [" ".join(words[(i % 5) : (i % 5) + 4 + i % 3]) for i in range(60)]
    out = {}
    for split, chunk in (("train", lines[:40]), ("validation", lines[40:50]), ("test", lines[50:])):
        path = tmp_path / f"{split}.txt"
        path.write_text("\n".join(chunk) + "\n", encoding="utf-8")
        out[split] = str(path)
    return out


def test_language_model_stream_counts_one_eos_per_line(lm_files: dict[str, str], tmp_path: Path) -> None:
    dm = LanguageModelingData("text", lm_files, batch_size=3, seq_len=5, cache_dir=str(tmp_path / "c"))
    assert dm.eos_id == dm.tokenizer.token_to_id("<eos>") and dm.pad_id == 0 and dm.bos_id is None
    dm.setup("fit")
    lines = Path(lm_files["train"]).read_text().splitlines()
    stream = dm.streams["train"]
    assert stream.numel() == sum(len(line.split()) + 1 for line in lines)
    assert int((stream == dm.eos_id).sum()) == len(lines)
    assert dm.tokenizer.decode(stream[: len(lines[0].split())].tolist()) == lines[0]
    batches = list(dm.train_dataloader())
    assert batches[0]["input_ids"].shape == (3, 5) and bool(batches[0]["reset"])
    assert not any(bool(b["reset"]) for b in batches[1:])
    assert torch.equal(batches[0]["targets"][:, :-1], batches[0]["input_ids"][:, 1:])


def test_language_model_shuffled_mode_and_char_tokens(lm_files: dict[str, str], tmp_path: Path) -> None:
    dm = LanguageModelingData(
        "text",
        lm_files,
        tokenizer_type="char",
        mode="shuffled",
        batch_size=4,
        seq_len=8,
        cache_dir=str(tmp_path),
    )
    assert dm.vocab_size == len(set(Path(lm_files["train"]).read_text()) - {"\n"}) + 3  # pad, unk, eos
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (4, 8) and bool(batch["reset"])
    assert next(iter(dm.val_dataloader()))["input_ids"].shape[0] == 4
    with pytest.raises(ValueError, match="mode must be"):
        LanguageModelingData("text", lm_files, mode="random", cache_dir=str(tmp_path))  # type: ignore[arg-type]
