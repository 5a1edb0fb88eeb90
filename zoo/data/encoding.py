"""Picklable ``Dataset.map`` functions and the pieces text data modules share.

The map functions hold the tokenizer as its JSON string, so ``datasets`` hashes them the same way in every
process and a second run finds the cached result by fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tokenizers import Tokenizer

from zoo.data.tokenizers import PAD, TokenizerKind, cache_key, default_cache_dir, resolve_tokenizer

_PAD_CANDIDATES = (PAD, "[PAD]", "<|pad|>", "<pad_token>")

#: Tokens (words, for tagging) a text keeps by default, in training as in prediction: one huge row must not
#: turn an epoch into hours and gigabytes.
DEFAULT_MAX_LENGTH = 512


class _TokenizerHolder:
    """Rebuilds the tokenizer lazily from JSON; only the JSON is pickled (and hashed)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer_json = tokenizer.to_str()
        self._tok: Tokenizer | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tok"] = None
        return state

    @property
    def tok(self) -> Tokenizer:
        if self._tok is None:
            self._tok = Tokenizer.from_str(self.tokenizer_json)
            self._tok.no_padding()
            self._tok.no_truncation()
        return self._tok


class EncodeText(_TokenizerHolder):
    """Batched map: ``text_column`` -> ``input_ids`` (+ ``length``, ``truncated``), labels and appended ids.

    Args:
        tokenizer: the tokenizer.
        text_column: column of raw strings.
        max_length: keep at most this many tokens (``None``: all).
        append_ids: ids added after every text (e.g. ``[eos_id]`` for language modelling).
        label_column: column of labels to convert with ``label_to_id`` (names) or keep (ids) as ``labels``.
        label_to_id: name -> id; ``None`` when the labels are ids already.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        text_column: str,
        max_length: int | None = None,
        append_ids: Sequence[int] = (),
        label_column: str | None = None,
        label_to_id: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(tokenizer)
        self.text_column = text_column
        self.max_length = max_length
        self.append_ids = list(append_ids)
        self.label_column = label_column
        self.label_to_id = dict(label_to_id) if label_to_id is not None else None

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        texts = [t if t is not None else "" for t in batch[self.text_column]]
        encodings = self.tok.encode_batch(texts)
        limit = self.max_length
        ids = [enc.ids[:limit] + self.append_ids for enc in encodings]
        out: dict[str, list[Any]] = {
            "input_ids": ids,
            "length": [len(i) for i in ids],
            "truncated": [limit is not None and len(enc.ids) > limit for enc in encodings],
        }
        if self.label_column is not None:
            labels = batch[self.label_column]
            if self.label_to_id is not None:
                out["labels"] = [self.label_to_id[str(y)] for y in labels]
            else:
                out["labels"] = [int(y) for y in labels]
        return out


class EncodeWords(_TokenizerHolder):
    """Batched map for tagging: one id per word (its first sub-token, ``<unk>`` if none) and tag ids.

    Args:
        tokenizer: the tokenizer; words are passed pre-split, so a word never merges with its neighbours.
        tokens_column: column of word lists.
        tags_column: column of tag lists (names), converted with ``tag_to_id``.
        tag_to_id: tag name -> id.
        unk_id: id for a word that the tokenizer maps to nothing.
        max_length: keep at most this many words.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        tokens_column: str,
        tags_column: str,
        tag_to_id: Mapping[str, int],
        unk_id: int,
        max_length: int | None = None,
    ) -> None:
        super().__init__(tokenizer)
        self.tokens_column = tokens_column
        self.tags_column = tags_column
        self.tag_to_id = dict(tag_to_id)
        self.unk_id = unk_id
        self.max_length = max_length

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        words_batch = batch[self.tokens_column]
        tags_batch = batch[self.tags_column]
        ids_out: list[list[int]] = []
        tags_out: list[list[int]] = []
        truncated: list[bool] = []
        for words, tags in zip(words_batch, tags_batch, strict=True):
            if len(words) != len(tags):
                raise ValueError(
                    f"a row has {len(words)} words but {len(tags)} tags; every word needs exactly one tag: "
                    f"{words}"
                )
        encodings = self.tok.encode_batch(
            [list(w) for w in words_batch], is_pretokenized=True, add_special_tokens=False
        )
        for words, tags, enc in zip(words_batch, tags_batch, encodings, strict=True):
            first = [self.unk_id] * len(words)
            seen = [False] * len(words)
            for tok_id, word in zip(enc.ids, enc.word_ids, strict=True):
                if word is not None and not seen[word]:
                    first[word], seen[word] = tok_id, True
            ids_out.append(first[: self.max_length])
            tags_out.append([self.tag_to_id[t] for t in tags][: self.max_length])
            truncated.append(self.max_length is not None and len(first) > self.max_length)
        return {
            "input_ids": ids_out,
            "tags": tags_out,
            "length": [len(i) for i in ids_out],
            "truncated": truncated,
        }


def find_pad_id(tokenizer: Tokenizer) -> int:
    """Id of the padding token (``<pad>`` for the zoo's tokenizers; common names for pretrained ones)."""
    for name in _PAD_CANDIDATES:
        i = tokenizer.token_to_id(name)
        if i is not None:
            return int(i)
    return 0


def module_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The root cache directory of a data module (``cache_dir`` or the default)."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def datasets_cache(cache_dir: str | os.PathLike[str] | None) -> str | None:
    """Where ``datasets`` caches: ``<cache_dir>/datasets`` when a cache_dir is given, else its own default."""
    return str(Path(cache_dir).expanduser() / "datasets") if cache_dir is not None else None


class _ColumnTexts:
    """A zero-argument callable returning a column's texts (read only when a tokenizer must be trained)."""

    def __init__(self, ds: datasets.Dataset, column: str, words: bool = False) -> None:
        self.ds, self.column, self.words = ds, column, words

    def __call__(self) -> list[str]:
        values = self.ds[self.column]
        if self.words:
            # word lists: one word per "text", so the trainer never splits or joins words
            return [w for row in values for w in row]
        return [v if v is not None else "" for v in values]


def tokenizer_for(
    train: datasets.Dataset,
    column: str,
    *,
    task: str,
    cache_dir: str | os.PathLike[str] | None,
    kind: TokenizerKind,
    tokenizer_file: str | None,
    pretrained_tokenizer: str | None,
    lowercase: bool,
    min_frequency: int,
    max_vocab_size: int | None,
    eos: bool = False,
    bos: bool = False,
    words: bool = False,
    data_key: str | None = None,
) -> tuple[Tokenizer, Path]:
    """Resolve a data module's tokenizer; trained ones live in ``<cache>/tokenizers/<key>/tokenizer.json``.

    The key hashes the training split's fingerprint (or ``data_key``) with every setting that changes the
    vocabulary, so different data or settings never share a file.
    """
    key = cache_key(
        task,
        data_key or train._fingerprint,
        column,
        kind,
        lowercase,
        min_frequency,
        max_vocab_size,
        bos,
        eos,
        pretrained_tokenizer,
    )
    directory = module_cache_dir(cache_dir) / "tokenizers" / key
    return resolve_tokenizer(
        directory=directory,
        texts_factory=_ColumnTexts(train, column, words=words),
        kind=kind,
        tokenizer_file=tokenizer_file,
        pretrained_tokenizer=pretrained_tokenizer,
        lowercase=lowercase,
        min_frequency=min_frequency,
        max_vocab_size=max_vocab_size,
        bos=bos,
        eos=eos,
    )


def flat_ids(ds: datasets.Dataset, column: str = "input_ids") -> torch.Tensor:
    """All ids of a list column, concatenated in row order, as a ``Long`` tensor."""
    table = ds.with_format("arrow")[:]
    assert isinstance(table, pa.Table)
    values = pc.list_flatten(table.column(column))
    return torch.from_numpy(values.to_numpy().astype("int64"))
