"""The data modules on the real corpora in ../shared/data (skipped when they are absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from zoo.data.tagging import TokenTaggingData
from zoo.data.text import LanguageModelingData, TextClassificationData

pytestmark = [pytest.mark.data, pytest.mark.slow]

# SST-2 has no quoting: a quote inside a sentence is text, so pandas must not parse quotes.
SST2_CSV = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}


@pytest.fixture(scope="session")
def ptb(shared_data: Path, session_cache: Path) -> LanguageModelingData:
    d = shared_data / "ptb"
    files = {
        s: str(d / f"ptb.{f}.txt") for s, f in (("train", "train"), ("validation", "valid"), ("test", "test"))
    }
    dm = LanguageModelingData("text", files, batch_size=20, seq_len=35, cache_dir=str(session_cache))
    dm.setup("fit")
    return dm


def test_ptb_vocabulary_and_token_count(ptb: LanguageModelingData) -> None:
    stream = ptb.streams["train"]
    assert stream.numel() == 929_589, "887,521 words + one <eos> per line (42,068 lines)"
    assert int(stream.unique().numel()) == 10_000, "9,999 word types + <eos>"
    # ids 0..10,001: the 10,000 types, <pad> and <eos>; PTB's literal <unk> word takes the place of the
    # special <unk>, whose id stays unused
    assert ptb.vocab_size == 10_002
    assert int(stream.max()) < ptb.vocab_size, "every id must fit the embedding the model builds"
    assert int((stream == ptb.eos_id).sum()) == 42_068
    assert ptb.tokenizer.token_to_id("<unk>") in set(stream[:200].tolist()), "PTB's own <unk> is our <unk>"
    assert int((ptb.streams["validation"] == ptb.tokenizer.token_to_id("<unk>")).sum()) > 0


def test_ptb_batches_follow_the_stream(ptb: LanguageModelingData) -> None:
    loader = ptb.train_dataloader()
    assert len(loader) == 1328  # ceil((929,589 // 20 - 1) / 35)
    it = iter(loader)
    a, b = next(it), next(it)
    rows = ptb.streams["train"][: 20 * (929_589 // 20)].view(20, -1)
    assert torch.equal(a["input_ids"], rows[:, :35]) and torch.equal(b["input_ids"], rows[:, 35:70])
    assert bool(a["reset"]) and not bool(b["reset"])


def test_ewt_sentences_and_upos_tags(shared_data: Path, session_cache: Path) -> None:
    d = shared_data / "ud_english_ewt"
    files = {
        s: str(d / f"en_ewt-ud-{f}.conllu") for s, f in (("train", "train"), ("dev", "dev"), ("test", "test"))
    }
    dm = TokenTaggingData("conllu", files, cache_dir=str(session_cache))
    assert len(dm.raw_splits["train"]) == 12_544
    assert (len(dm.raw_splits["validation"]), len(dm.raw_splits["test"])) == (2_001, 2_077)
    assert dm.num_tags == 17
    expected = [
        "ADJ",
        "ADP",
        "ADV",
        "AUX",
        "CCONJ",
        "DET",
        "INTJ",
        "NOUN",
        "NUM",
        "PART",
        "PRON",
        "PROPN",
        "PUNCT",
        "SCONJ",
        "SYM",
        "VERB",
        "X",
    ]
    assert dm.tag_names == expected
    assert sum(len(t) for t in dm.raw_splits["train"]["upos"]) == 204_577, (
        "syntactic words, no ranges or empties"
    )
    batch = next(iter(dm.val_dataloader()))
    mask = batch["tags"] != -100
    assert torch.equal(mask.sum(1), batch["lengths"])


def test_sst2_rows_match_the_file(shared_data: Path, session_cache: Path) -> None:
    d = shared_data / "sst2"
    files = {s: str(d / f"{f}.tsv") for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))}
    dm = TextClassificationData(
        "csv", files, text_column="sentence", load_kwargs=SST2_CSV, cache_dir=str(session_cache)
    )
    lines = (d / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.rsplit("\t", 1) for line in lines]
    train = dm.raw_splits["train"]
    assert len(train) == len(rows) == 60_614
    assert train["sentence"] == [t for t, _ in rows]
    assert train["label"] == [int(y) for _, y in rows]
    assert dm.label_names == ["0", "1"] and dm.num_classes == 2
    assert (len(dm.raw_splits["validation"]), len(dm.raw_splits["test"])) == (6_735, 872)
