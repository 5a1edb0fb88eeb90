"""Tokenizers: kinds, special tokens, train-once caching, loading by path, the pretrained path offline."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from zoo.data import tokenizers as ztok
from zoo.data.tokenizers import load_pretrained_tokenizer, load_tokenizer, train_or_load, train_tokenizer

TEXTS = ["the cat sat on the mat", "The dog sat", "a cat and a dog", "the end"]


def test_word_level_special_tokens_lowercase_and_unk() -> None:
    tok = train_tokenizer(TEXTS, "word", lowercase=True, eos=True)
    assert [tok.token_to_id(t) for t in ("<pad>", "<unk>", "<eos>")] == [0, 1, 2]
    assert tok.encode("THE cat").tokens == ["the", "cat"]
    assert tok.encode("the zebra").tokens == ["the", "<unk>"]
    words = {w.lower() for t in TEXTS for w in t.split()}
    assert tok.get_vocab_size() == len(words) + 3


def test_word_level_min_frequency_and_max_vocab_size() -> None:
    tok = train_tokenizer(TEXTS, "word", min_frequency=2)
    kept = set(tok.get_vocab()) - {"<pad>", "<unk>"}
    assert kept == {"the", "cat", "sat", "a", "dog"}  # words seen at least twice (case kept)
    capped = train_tokenizer(TEXTS, "word", max_vocab_size=5)
    assert capped.get_vocab_size() == 5
    assert "the" in capped.get_vocab()  # the most frequent word survives the cap


def test_bpe_and_char_round_trip() -> None:
    bpe = train_tokenizer(TEXTS * 5, "bpe", max_vocab_size=60)
    assert bpe.token_to_id("<pad>") == 0
    assert bpe.decode(bpe.encode("the cat sat").ids) == "the cat sat"
    char = train_tokenizer(TEXTS, "char")
    enc = char.encode("cat sat")
    assert enc.tokens == list("cat sat")
    assert char.decode(enc.ids) == "cat sat"


def test_train_or_load_trains_once_then_reloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok, path = train_or_load(tmp_path / "k", TEXTS, "word")
    assert path == tmp_path / "k" / "tokenizer.json" and path.is_file()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("retrained although tokenizer.json exists")

    monkeypatch.setattr(ztok, "train_tokenizer", fail)
    again, path2 = train_or_load(tmp_path / "k", TEXTS, "word")
    assert path2 == path
    assert again.get_vocab() == tok.get_vocab()


def test_saved_padding_is_switched_off(tmp_path: Path) -> None:
    tok = train_tokenizer(TEXTS, "word")
    tok.enable_padding(pad_id=0, pad_token="<pad>", length=20)
    tok.enable_truncation(3)
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded.padding is None and loaded.truncation is None
    assert len(loaded.encode("the cat sat on the mat").ids) == 6


def test_missing_tokenizer_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_tokenizer(missing)


def test_pretrained_path_loads_a_local_tokenizer_json(tmp_path: Path) -> None:
    tok = train_tokenizer(TEXTS, "word")
    tok.save(str(tmp_path / "tokenizer.json"))
    by_file = load_pretrained_tokenizer(str(tmp_path / "tokenizer.json"))
    by_dir = load_pretrained_tokenizer(str(tmp_path))
    assert isinstance(by_file, Tokenizer)
    assert by_file.get_vocab() == by_dir.get_vocab() == tok.get_vocab()


def test_concurrent_callers_train_once_and_share_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in for DDP ranks constructing the data module at once: one trains, the rest load its file.
    calls = []
    real_train = ztok.train_tokenizer

    def counting_train(*args: object, **kwargs: object) -> Tokenizer:
        calls.append(1)
        time.sleep(0.2)  # widen the window in which a second caller could race
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ztok, "train_tokenizer", counting_train)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: train_or_load(tmp_path / "shared", TEXTS, "word"), range(3)))
    assert len(calls) == 1
    assert len({p for _, p in results}) == 1
    assert all(tok.get_vocab() == results[0][0].get_vocab() for tok, _ in results)
