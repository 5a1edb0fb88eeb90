"""Each word's characters as ids, for a character-level word encoder (``TokenTagger(char_encoder=...)``).

The character vocabulary is a plain list (id = index: ``<pad>``, ``<unk>``, then the characters of the
training words, sorted); it is saved in the model's hyperparameters, so a checkpoint reads new words'
characters without the data module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

CHAR_PAD, CHAR_UNK = "<pad>", "<unk>"
CHAR_PAD_ID, CHAR_UNK_ID = 0, 1
DEFAULT_MAX_WORD_CHARS = 20


def build_char_vocab(words: Iterable[str]) -> list[str]:
    """``[<pad>, <unk>, *sorted characters of words]``: the ids of :func:`word_char_ids`."""
    chars: set[str] = set()
    for word in words:
        chars.update(word)
    return [CHAR_PAD, CHAR_UNK, *sorted(chars)]


def check_max_word_chars(max_word_chars: int) -> None:
    """At least 2 characters per word (one from each end of a long word)."""
    if isinstance(max_word_chars, bool) or not isinstance(max_word_chars, int) or max_word_chars < 2:
        raise ValueError(f"max_word_chars must be an integer of at least 2, got {max_word_chars!r}")


def word_char_ids(words: Sequence[str], char_to_id: Mapping[str, int], width: int) -> list[int]:
    """The words' character ids, ``width`` per word (``<pad>`` after a short word), flattened.

    A word longer than ``width`` keeps its first ``width // 2`` and its last ``width - width // 2``
    characters: the ends carry the prefixes and suffixes that tell a word's class. An unseen character
    gets ``<unk>``; an empty word is all padding.
    """
    out: list[int] = []
    head = width // 2
    for word in words:
        kept = word if len(word) <= width else word[:head] + word[len(word) - (width - head) :]
        row = [char_to_id.get(c, CHAR_UNK_ID) for c in kept]
        out.extend(row + [CHAR_PAD_ID] * (width - len(row)))
    return out


def char_batch(sentences: Sequence[Sequence[str]], char_vocab: Sequence[str], width: int) -> Tensor:
    """``Long[B, T, width]`` character ids of word lists (``T`` the longest), padding words all ``<pad>``."""
    char_to_id = {c: i for i, c in enumerate(char_vocab)}
    time = max((len(s) for s in sentences), default=0)
    out = torch.full((len(sentences), time * width), CHAR_PAD_ID, dtype=torch.long)
    for row, words in enumerate(sentences):
        ids = word_char_ids(words, char_to_id, width)
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out.view(len(sentences), time, width)


class EncodeChars:
    """Batched map: word lists -> ``char_ids`` (flat, ``width`` per word, the first ``max_length`` words)."""

    def __init__(
        self, tokens_column: str, char_vocab: Sequence[str], width: int, max_length: int | None
    ) -> None:
        self.tokens_column, self.width, self.max_length = tokens_column, width, max_length
        self.char_to_id = {c: i for i, c in enumerate(char_vocab)}

    def __call__(self, batch: Mapping[str, list[list[str]]]) -> dict[str, list[list[int]]]:
        return {
            "char_ids": [
                word_char_ids(list(words)[: self.max_length], self.char_to_id, self.width)
                for words in batch[self.tokens_column]
            ]
        }
