"""TokenTagger's character-level word encoder: shapes, padding, and what it learns that words cannot."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from zoo.data.chars import CHAR_PAD_ID, CHAR_UNK_ID, build_char_vocab, char_batch, word_char_ids
from zoo.tasks import TokenTagger

VOCAB = build_char_vocab("abcdefghijklmnopqrstuvwxyz")


def char_tagger(**kwargs: object) -> TokenTagger:
    options: dict = {
        "encoder": {"cell": "gru", "hidden_size": 8, "bidirectional": True},
        "vocab_size": 6,
        "num_tags": 3,
        "embedding_dim": 4,
        "dropout": 0.0,
        "char_encoder": {"cell": "gru", "hidden_size": 5},
        "char_vocab": VOCAB,
        "char_embedding_dim": 3,
        "max_word_chars": 6,
    }
    options.update(kwargs)
    return TokenTagger(**options)  # type: ignore[arg-type]


def test_word_char_ids_pad_short_words_and_keep_both_ends_of_long_ones() -> None:
    to_id = {c: i for i, c in enumerate(VOCAB)}
    ids = word_char_ids(["ab", "abcdefgh", "a?"], to_id, 4)
    assert ids[:4] == [to_id["a"], to_id["b"], CHAR_PAD_ID, CHAR_PAD_ID]
    assert ids[4:8] == [to_id[c] for c in "abgh"], "a long word keeps its prefix and its suffix"
    assert ids[8:] == [to_id["a"], CHAR_UNK_ID, CHAR_PAD_ID, CHAR_PAD_ID], "an unseen character is <unk>"
    assert char_batch([["ab"], ["a", "b", "c"]], VOCAB, 4).shape == (2, 3, 4)


def test_char_tagger_shapes_and_the_bidirectional_default() -> None:
    task = char_tagger()
    assert task.char_encoder is not None and task.char_encoder.bidirectional
    assert task.encoder.input_size == 4 + 2 * 5, "the word embedding joins both final character states"
    chars = char_batch([["ab", "abc"], ["abcdefghij"]], VOCAB, 6)
    logits = task(torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1]), chars)
    assert logits.shape == (2, 2, 3)
    flat = task(torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1]), chars.view(2, -1))
    torch.testing.assert_close(flat, logits)


def test_padded_batch_equals_each_sentence_alone_in_float64() -> None:
    torch.manual_seed(0)
    task = char_tagger().double().eval()
    sentences = [["a", "abcdefgh", "xyz"], ["hello"], ["qq", "w"]]
    ids = [[1, 2, 3], [4], [5, 1]]
    lengths = torch.tensor([len(s) for s in sentences])
    padded = torch.zeros(3, 3, dtype=torch.long)
    for row, sentence in enumerate(ids):
        padded[row, : len(sentence)] = torch.tensor(sentence)
    together = task(padded, lengths, char_batch(sentences, VOCAB, 6))
    for row, sentence in enumerate(sentences):
        alone = task(torch.tensor([ids[row]]), None, char_batch([sentence], VOCAB, 6))
        torch.testing.assert_close(together[row, : len(sentence)], alone[0], rtol=0, atol=1e-12)


def test_a_char_tagger_needs_its_characters() -> None:
    with pytest.raises(ValueError, match=r"char_vocab.*chars: true"):
        char_tagger(char_vocab=None)
    with pytest.raises(ValueError, match="needs char_ids"):
        char_tagger()(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="char_ids must be in"):
        char_tagger()(torch.tensor([[1]]), None, torch.full((1, 1, 6), len(VOCAB)))


def test_hyperparameters_rebuild_the_char_tagger() -> None:
    task = char_tagger()
    again = TokenTagger(**task.hparams)
    again.load_state_dict(task.state_dict())
    assert again.char_vocab == VOCAB and again.hparams["char_encoder"]["bidirectional"] is True


def suffix_sentences(stems: list[str], rng: random.Random) -> list[tuple[list[str], list[int]]]:
    """Sentences whose tags are told by the words' suffixes alone (``ing`` 0, ``ed`` 1, ``ly`` 2)."""
    suffixes = ["ing", "ed", "ly"]
    out = []
    for _ in range(len(stems)):
        tags = [rng.randrange(3) for _ in range(rng.randint(2, 5))]
        out.append(([rng.choice(stems) + suffixes[t] for t in tags], tags))
    return out


def train_and_score(task: TokenTagger, train: list, test: list, known: dict[str, int]) -> float:
    def batch(rows: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        words = [w for w, _ in rows]
        time = max(len(w) for w in words)
        ids = torch.zeros(len(rows), time, dtype=torch.long)
        tags = torch.full((len(rows), time), -100)
        for r, (w, t) in enumerate(rows):
            ids[r, : len(w)] = torch.tensor([known.get(x, 1) for x in w])
            tags[r, : len(t)] = torch.tensor(t)
        return ids, torch.tensor([len(w) for w in words]), tags, task.char_ids_of(words)

    torch.manual_seed(0)
    optimizer = torch.optim.Adam(task.parameters(), lr=0.03)
    ids, lengths, tags, chars = batch(train)
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(task(ids, lengths, chars).reshape(-1, 3), tags.reshape(-1))
        loss.backward()
        optimizer.step()
    ids, lengths, tags, chars = batch(test)
    with torch.no_grad():
        best = task.eval()(ids, lengths, chars).argmax(-1)
    real = tags != -100
    return float((best[real] == tags[real]).float().mean())


def test_characters_tag_unseen_words_by_their_suffix_where_words_alone_cannot() -> None:
    rng = random.Random(0)
    stems = ["".join(rng.choice("bcdfgkmnprstvz") for _ in range(3)) for _ in range(80)]
    train, test = suffix_sentences(stems[:60], rng), suffix_sentences(stems[60:], rng)
    known = {w: i + 2 for i, w in enumerate(sorted({w for ws, _ in train for w in ws}))}  # 0 pad, 1 unk
    vocab = build_char_vocab(w for ws, _ in train for w in ws)
    common = {"vocab_size": len(known) + 2, "embedding_dim": 8, "dropout": 0.0}
    words_only = TokenTagger({"cell": "gru", "hidden_size": 8, "bidirectional": True}, num_tags=3, **common)
    with_chars = TokenTagger(
        {"cell": "gru", "hidden_size": 8, "bidirectional": True},
        num_tags=3,
        char_encoder={"cell": "gru", "hidden_size": 8},
        char_vocab=vocab,
        char_embedding_dim=8,
        max_word_chars=8,
        **common,
    )
    assert train_and_score(words_only, train, test, known) < 0.5, "every test word is <unk> to the words"
    assert train_and_score(with_chars, train, test, known) > 0.95
