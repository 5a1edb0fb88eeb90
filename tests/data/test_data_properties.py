"""Property tests over the data pipeline: whatever is written to a real file, the module either builds and
serves valid batches, or refuses with a ``DataValidationError`` that says where the problem is.

Random Unicode (control characters, lone surrogates written as the invalid bytes they become), empty and
whitespace-only texts, very long texts, float/int/str/missing labels, byte-order marks and CRLF line ends
go to CSV, JSON Lines and CoNLL-U files. The examples are derandomised and few, so the suite stays fast.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from zoo.data import TextClassificationData, TokenTaggingData
from zoo.errors import DataValidationError

MAX_LENGTH = 16
BOUNDED = settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# every character class that has broken a text pipeline: controls, separators, lone surrogates, astral
any_char = st.characters(exclude_categories=())
words_text = st.text(st.sampled_from("ab \x0b\u2028\x85é🙂"), min_size=1, max_size=20).filter(str.strip)
texts = st.one_of(
    st.text(any_char, max_size=12),
    st.sampled_from(["", " ", "\t \u3000", "\x00", "\x1c\x1d", "a\r\nb", "\ufeffword"]),
    st.integers(40, 300).map(lambda n: " ".join(["long"] * n)),
    words_text,
)
# a clean column (printable words, long texts) or any mix of the above
text_columns = st.one_of(
    st.lists(st.one_of(words_text, st.integers(20, 300).map(lambda n: "w " * n)), min_size=1, max_size=8),
    st.lists(texts, min_size=1, max_size=8),
)
labels = st.one_of(
    st.integers(-1, 3),
    st.sampled_from(["pos", "neg", "neutral"]),
    st.sampled_from([0.0, 1.0, 0.37, 0.81]),
    st.none(),
)
# mostly one kind of label per file, as real files are; sometimes any mix
label_columns = st.one_of(
    st.lists(st.integers(0, 2), min_size=1, max_size=8),
    st.lists(st.sampled_from(["pos", "neg"]), min_size=1, max_size=8),
    st.lists(labels, min_size=1, max_size=8),
)
encodings = st.sampled_from(["utf-8", "utf-8-sig"])


def write_rows(path: Path, fmt: str, rows: list[tuple[str, Any]], encoding: str, crlf: bool) -> None:
    """Write ``rows`` as a user's tool would; lone surrogates become the (invalid) bytes they encode to."""
    end = "\r\n" if crlf else "\n"
    if fmt == "csv":
        with path.open("w", encoding=encoding, errors="surrogatepass", newline="") as f:
            writer = csv.writer(f, lineterminator=end)
            writer.writerow(["text", "label"])
            writer.writerows([(t, "" if y is None else y) for t, y in rows])
    else:
        lines = [json.dumps({"text": t, "label": y}) for t, y in rows]
        path.write_text(end.join(lines) + end, encoding=encoding)


def assert_names_the_place(err: DataValidationError) -> None:
    message = str(err)
    assert re.search(r"split '\w+'", message), message
    assert re.search(r"\b(row|rows|line)\b", message), message
    file_level = any(p in message for p in ("is empty", "not valid UTF-8", "cannot be read", "header line"))
    assert file_level or "column '" in message, message


@settings(BOUNDED, max_examples=20)
@given(
    fmt=st.sampled_from(["csv", "json"]),
    train_texts=text_columns,
    train_labels=label_columns,
    val_texts=text_columns,
    val_labels=label_columns,
    encoding=encodings,
    crlf=st.booleans(),
)
# lone surrogates: invalid UTF-8 bytes in a CSV file, an invalid escape in a JSON one
@example("csv", ["ok", "ab\ud800c"], [0, 1], ["fine"], [1], "utf-8", False)
@example("json", ["ok", "ab\ud800c"], [0, 1], ["fine"], [1], "utf-8", True)
def test_classification_builds_valid_batches_or_names_the_problem(
    fmt: str,
    train_texts: list[str],
    train_labels: list[Any],
    val_texts: list[str],
    val_labels: list[Any],
    encoding: str,
    crlf: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {}
        for split, split_texts, split_labels in (
            ("train", train_texts, train_labels),
            ("validation", val_texts, val_labels),
        ):
            rows = [(t, split_labels[i % len(split_labels)]) for i, t in enumerate(split_texts)]
            path = root / f"{split}.{'csv' if fmt == 'csv' else 'jsonl'}"
            try:
                write_rows(path, fmt, rows, encoding, crlf)
            except UnicodeEncodeError:
                path.write_bytes(b"")  # JSON cannot hold what the encoder refused: an empty file then
            files[split] = str(path)
        try:
            dm = TextClassificationData(
                fmt, files, max_length=MAX_LENGTH, batch_size=3, cache_dir=str(root / "cache")
            )
            dm.prepare_data()
            dm.setup("fit")
            batches = [*dm.train_dataloader(), *dm.val_dataloader()]
        except DataValidationError as err:
            assert_names_the_place(err)
            event(f"refused: {str(err).split(': ', 1)[-1][:30]}")
            return
        event("built")
        assert batches
        for batch in batches:
            ids, lengths, y = batch["input_ids"], batch["lengths"], batch["labels"]
            assert ids.dtype == torch.long and int(ids.min()) >= 0 and int(ids.max()) < dm.vocab_size
            assert int(lengths.min()) >= 1 and int(lengths.max()) <= MAX_LENGTH
            assert int(y.min()) >= 0 and int(y.max()) < dm.num_classes


words = st.text(st.characters(exclude_characters="\t\r\n", exclude_categories=()), min_size=1, max_size=6)
sentences = st.lists(st.tuples(words, st.sampled_from(["NOUN", "VERB", "X"])), min_size=1, max_size=24)


def conllu_text(sents: list[list[tuple[str, str]]], crlf: bool) -> str:
    end = "\r\n" if crlf else "\n"
    blocks = []
    for k, sent in enumerate(sents):
        lines = [f"# sent_id = {k}"]
        lines += [f"{i}\t{w}\t_\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(sent, start=1)]
        blocks.append(end.join(lines) + end)
    return end.join(blocks) + end


@BOUNDED
@given(
    train=st.lists(sentences, min_size=1, max_size=5),
    validation=st.lists(sentences, min_size=1, max_size=3),
    encoding=encodings,
    crlf=st.booleans(),
)
def test_tagging_builds_valid_batches_or_names_the_problem(
    train: list[list[tuple[str, str]]],
    validation: list[list[tuple[str, str]]],
    encoding: str,
    crlf: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {}
        for split, sents in (("train", train), ("validation", validation)):
            path = root / f"{split}.conllu"
            path.write_bytes(conllu_text(sents, crlf).encode(encoding, errors="surrogatepass"))
            files[split] = str(path)
        try:
            dm = TokenTaggingData(
                "conllu", files, max_length=MAX_LENGTH, batch_size=2, cache_dir=str(root / "cache")
            )
            batches = [*dm.train_dataloader(), *dm.val_dataloader()]
        except DataValidationError as err:
            assert_names_the_place(err)
            event(f"refused: {str(err).split(': ', 1)[-1][:30]}")
            return
        event("built")
        for batch in batches:
            ids, tags, lengths = batch["input_ids"], batch["tags"], batch["lengths"]
            assert int(ids.min()) >= 0 and int(ids.max()) < dm.vocab_size
            assert int(lengths.min()) >= 1 and int(lengths.max()) <= MAX_LENGTH
            real = tags[tags != -100]
            assert int(real.min()) >= 0 and int(real.max()) < dm.num_tags
            assert int((tags != -100).sum()) == int(lengths.sum())
