"""Bad data is refused while the data module is built, naming the split, the row and the column.

Each test writes the file a user would have, builds the module as the ``zoo`` command does, and checks the
message (what is wrong, where, and how to fix it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
from data_support import SENTIMENT_ROWS, write_csv
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from zoo.data import (
    LanguageModelingData,
    TextClassificationData,
    TimeSeriesData,
    TokenTaggingData,
    train_tokenizer,
)
from zoo.data.encoding import DEFAULT_MAX_LENGTH
from zoo.errors import DataValidationError, ZooConfigError


def classify(tmp_path: Path, files: dict[str, str], **kwargs: object) -> TextClassificationData:
    """Build the module and its datasets, as ``zoo fit`` does before the first step."""
    dm = TextClassificationData("csv", files, cache_dir=str(tmp_path / "cache"), batch_size=4, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def good(tmp_path: Path, name: str = "good.csv") -> str:
    return str(write_csv(tmp_path / name, SENTIMENT_ROWS * 2))


def test_float_labels_are_refused_not_cut_to_integers(tmp_path: Path) -> None:
    rows = [(f"text {i}", round(0.37 + i / 100, 2)) for i in range(40)]
    files = {"train": str(write_csv(tmp_path / "scores.csv", rows))}
    with pytest.raises(DataValidationError) as err:
        classify(tmp_path, files)
    message = str(err.value)
    assert message.startswith("split 'train', rows 1 (") and "scores.csv line 2)" in message
    assert "column 'label': the label 0.37 is not a class" in message
    assert "integer or string class labels" in message and "Forecaster" in message


def test_whole_number_float_labels_are_classes(tmp_path: Path) -> None:
    files = {
        "train": str(
            write_csv(tmp_path / "t.csv", [(t, float(i % 2)) for i, (t, _) in enumerate(SENTIMENT_ROWS * 3)])
        )
    }
    dm = classify(tmp_path, files)
    assert dm.label_names == ["0", "1"]
    assert set(next(iter(dm.train_dataloader()))["labels"].tolist()) <= {0, 1}


def test_label_column_missing_in_one_split(tmp_path: Path) -> None:
    (tmp_path / "nolabel.csv").write_text("text\na film\nanother film\n", encoding="utf-8")
    files = {"train": good(tmp_path), "validation": str(tmp_path / "nolabel.csv")}
    with pytest.raises(DataValidationError, match=re.escape("split 'validation' (")) as err:
        classify(tmp_path, files)
    assert "nolabel.csv), column 'label': every one of its 2 rows is empty" in str(err.value)
    assert "Add the column to every split" in str(err.value)


def test_one_empty_label_cell(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\na,1\nb,0\nc,\nd,1\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as err:
        classify(tmp_path, {"train": str(path)})
    assert str(err.value).startswith(f"split 'train', row 3 ({path} line 4), column 'label': no value.")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataValidationError) as err:
        classify(tmp_path, {"train": str(tmp_path / "empty.csv"), "validation": good(tmp_path)})
    assert (
        str(err.value)
        == f"split 'train': {tmp_path / 'empty.csv'} is empty; it needs a header line and at least one row"
    )


def test_header_only_train_split(tmp_path: Path) -> None:
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(
        DataValidationError, match=r"^split 'train': .*header.csv has a header line but no rows"
    ):
        classify(tmp_path, {"train": str(tmp_path / "header.csv"), "validation": good(tmp_path)})


def test_int_labels_in_train_and_names_in_validation(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "ids.csv", [(t, i % 2) for i, (t, _) in enumerate(SENTIMENT_ROWS)])
    files = {
        "train": str(train),
        "validation": str(write_csv(tmp_path / "names.csv", [("a b", "1"), ("c", "pos")])),
    }
    with pytest.raises(DataValidationError) as err:
        classify(tmp_path, files)
    message = str(err.value)
    assert message.startswith("split 'validation', row 2 (") and "names.csv line 3) ('pos')" in message
    assert "column 'label': its values are strings there but integers in split 'train'" in message


def test_labels_of_two_kinds_in_one_json_split(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "a b", "label": 1}\n{"text": "c", "label": "x"}\n', encoding="utf-8")
    with pytest.raises(
        DataValidationError, match=re.escape(f"split 'train', row 2 ({path} line 2), column 'label'")
    ):
        TextClassificationData("json", {"train": str(path)}, cache_dir=str(tmp_path))


def test_non_utf8_conllu_names_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin.conllu"
    path.write_bytes(
        "1\tI\tI\tPRON\t_\t_\t0\troot\t_\t_\n2\tcaf\xe9\t_\tNOUN\t_\t_\t1\tx\t_\t_\n\n".encode("latin-1")
    )
    with pytest.raises(DataValidationError) as err:
        TokenTaggingData("conllu", {"train": str(path)}, cache_dir=str(tmp_path))
    assert str(err.value).startswith(
        f"split 'train': {path} is not valid UTF-8: byte 0xe9 at byte offset "
        f"{path.read_bytes().index(0xE9)} (line 2, column 6)"
    )


def test_non_utf8_csv_names_line_byte_and_the_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ngood,1\ncaf\xe9 ok,0\n".encode("latin-1"))
    with pytest.raises(DataValidationError) as err:
        classify(tmp_path, {"train": str(path)})
    assert "is not valid UTF-8: byte 0xe9 at byte offset 21 (line 3, column 4)" in str(err.value)
    assert "load_kwargs '{encoding: latin-1}'" in str(err.value)
    dm = TextClassificationData(
        "csv",
        {"train": str(path)},
        cache_dir=str(tmp_path),
        validation_fraction=0.5,
        load_kwargs={"encoding": "latin-1"},
    )
    assert "café ok" in [*dm.raw_splits["train"]["text"], *dm.raw_splits["validation"]["text"]]


@pytest.mark.parametrize("blank", ["", "   ", "\t\u3000 "])
def test_blank_texts_are_refused_at_construction(tmp_path: Path, blank: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "text,label\n" + "".join(f'"{t}",{y}\n' for t, y in [("a b", 1), (blank, 0), ("c", 1)]),
        encoding="utf-8",
    )
    with pytest.raises(DataValidationError) as err:
        TextClassificationData("csv", {"train": str(path)}, cache_dir=str(tmp_path))
    assert str(err.value).startswith(
        f"split 'train', row 2 ({path} line 3), column 'text': the text is empty or only whitespace; 1 of 3"
    )
    assert "--data.empty_texts drop" in str(err.value)


def test_blank_texts_dropped_with_a_count_when_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [("a b", "pos"), ("  ", "neg"), ("c", "neg"), ("", "pos")] * 5
    files = {"train": str(write_csv(tmp_path / "t.csv", rows)), "validation": good(tmp_path)}
    with caplog.at_level(logging.INFO, logger="zoo.data"):
        dm = classify(tmp_path, files, empty_texts="drop")
    assert len(dm.raw_splits["train"]) == 10
    assert (
        "train: dropped 10 of 20 rows (the text is empty or only whitespace) (empty_texts=drop)"
        in caplog.text
    )


def test_text_the_tokenizer_empties_is_refused(tmp_path: Path) -> None:
    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "a": 2}, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(Regex(r"\d"), "")
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tok.json"))
    files = {
        "train": str(write_csv(tmp_path / "t.csv", [("a", "pos"), ("123", "neg"), ("a a", "neg")])),
        "validation": good(tmp_path),
    }
    with pytest.raises(
        DataValidationError,
        match=r"split 'train', row \d, column 'text': the tokenizer makes no tokens of '123'",
    ):
        classify(tmp_path, files, tokenizer_file=str(tmp_path / "tok.json"))


def test_long_texts_truncated_by_default_with_a_count_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [*SENTIMENT_ROWS, (" ".join(["word"] * 200_000), "pos"), ("x " * 600, "neg")]
    files = {"train": str(write_csv(tmp_path / "t.csv", rows)), "validation": good(tmp_path)}
    start = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="zoo.data"):
        dm = classify(tmp_path, files)
        lengths = [int(n) for batch in dm.train_dataloader() for n in batch["lengths"]]
    assert time.perf_counter() - start < 30
    assert dm.max_length == DEFAULT_MAX_LENGTH == 512
    assert max(lengths) == 512 and len(lengths) == 10
    assert "train: 2 of 10 texts truncated to 512 tokens" in caplog.text
    assert "validation: 0 of 16 texts truncated to 512 tokens" in caplog.text
    assert dm.truncated == {"train": 2, "validation": 0}


def test_long_sentences_truncated_for_tagging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.jsonl"
    rows = [{"tokens": ["w"] * n, "tags": ["X"] * n} for n in (3, 40, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="zoo.data"):
        dm = TokenTaggingData(
            "json", {"train": str(path), "validation": str(path)}, max_length=8, cache_dir=str(tmp_path)
        )
        dm.setup("fit")
    assert "train: 1 of 3 sentences truncated to 8 tokens" in caplog.text
    assert max(len(r) for r in dm.encoded["train"]["input_ids"]) == 8


def test_sentence_without_words_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [{"tokens": ["a"], "tags": ["X"]}, {"tokens": [], "tags": []}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(
        DataValidationError,
        match=re.escape(f"split 'train', row 2 ({path} line 2), column 'tokens': the row has no words"),
    ):
        TokenTaggingData("json", {"train": str(path)}, cache_dir=str(tmp_path))


@pytest.mark.parametrize("max_length", [0, -5])
def test_max_length_must_be_positive(tmp_path: Path, max_length: int) -> None:
    with pytest.raises(ZooConfigError, match="max_length must be a positive number of tokens"):
        TextClassificationData(
            "csv", {"train": good(tmp_path)}, max_length=max_length, cache_dir=str(tmp_path)
        )


def test_language_model_split_too_short_names_the_split(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("the cat sat on the mat\n" * 20, encoding="utf-8")
    (tmp_path / "valid.txt").write_text("the cat\n", encoding="utf-8")
    dm = LanguageModelingData(
        data_files={"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "valid.txt")},
        batch_size=4,
        cache_dir=str(tmp_path),
    )
    for stage in (dm.prepare_data, lambda: dm.setup("fit")):
        with pytest.raises(
            DataValidationError, match=r"split 'validation' has 3 tokens, too few to cut into 4 rows"
        ):
            stage()


def test_byte_order_marks_are_not_part_of_the_data(tmp_path: Path) -> None:
    csv_file = tmp_path / "bom.csv"
    csv_file.write_text(
        "text,label\r\n" + "".join(f"{t},{y}\r\n" for t, y in SENTIMENT_ROWS), encoding="utf-8-sig"
    )
    dm = TextClassificationData(
        "csv", {"train": str(csv_file), "validation": str(csv_file)}, cache_dir=str(tmp_path)
    )
    assert dm.raw_splits["train"].column_names == ["text", "label"]
    assert all(not t.endswith("\r") for t in dm.raw_splits["train"]["text"])

    text_file = tmp_path / "bom.txt"
    text_file.write_text("hello world\r\n" * 30, encoding="utf-8-sig")
    lm = LanguageModelingData(data_files={"train": str(text_file)}, batch_size=2, cache_dir=str(tmp_path))
    assert lm.raw_splits["train"]["text"][0] == "hello world"
    assert "\ufeffhello" not in lm.tokenizer.get_vocab()

    conllu = tmp_path / "bom.conllu"
    conllu.write_text("# sent_id = 1\r\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\r\n\r\n", encoding="utf-8-sig")
    tagging = TokenTaggingData(
        "conllu", {"train": str(conllu), "validation": str(conllu)}, cache_dir=str(tmp_path)
    )
    assert tagging.raw_splits["train"][0] == {"tokens": ["Hi"], "upos": ["INTJ"]}


def test_control_characters_are_text(tmp_path: Path) -> None:
    path = tmp_path / "ctrl.csv"
    path.write_bytes(b"text,label\na\x00b,1\nc\x0bd e,0\n\x1bx,1\n")
    dm = classify(tmp_path, {"train": str(path), "validation": str(path)})
    assert sorted(dm.raw_splits["train"]["text"]) == sorted(["a\x00b", "c\x0bd e", "\x1bx"])
    assert all(int(n) >= 1 for batch in dm.train_dataloader() for n in batch["lengths"])


def test_lone_surrogate_through_the_python_api_is_named() -> None:
    with pytest.raises(DataValidationError, match=r"^text 2 holds a lone surrogate '\\ud800' at character 2"):
        train_tokenizer(["a b", "c\ud800d"])


def test_time_series_value_that_is_not_a_number_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    path.write_text(
        "t,y\n" + "".join(f"{i},{i % 7}\n" for i in range(30)) + "30,n/a?\n31,\n", encoding="utf-8"
    )
    with pytest.raises(DataValidationError) as err:
        TimeSeriesData(
            data_files={"train": str(path)}, input_length=4, time_column="t", feature_columns=["y"]
        )
    assert str(err.value).startswith(f"split 'train', row 32 ({path} line 33), column 'y': no value.")
    path.write_text("t,y\n" + "".join(f"{i},{i % 7}\n" for i in range(30)) + "30,n/a?\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as err:
        TimeSeriesData(data_files={"train": str(path)}, input_length=4, feature_columns=["y"])
    assert str(err.value).startswith(
        f"split 'train', row 31 ({path} line 32), column 'y': 'n/a?' is not a number"
    )


def test_time_series_infinite_value(tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    path.write_text("y\n" + "".join(f"{i % 7}.5\n" for i in range(30)) + "inf\n", encoding="utf-8")
    with pytest.raises(
        DataValidationError, match=re.escape(f"row 31 ({path} line 32), column 'y': inf is not a finite")
    ):
        TimeSeriesData(data_files={"train": str(path)}, input_length=4)


def test_language_model_reads_a_huge_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    path.write_text("a b c\n" * 50 + " ".join(["w"] * 200_000) + "\n" + "a b\n" * 50, encoding="utf-8")
    start = time.perf_counter()
    lm = LanguageModelingData(
        data_files={"train": str(path)}, batch_size=4, seq_len=8, cache_dir=str(tmp_path)
    )
    lm.setup("fit")
    assert (
        int(lm.streams["train"].numel()) + int(lm.streams["validation"].numel()) == 150 + 200_000 + 100 + 101
    )
    assert time.perf_counter() - start < 30


def test_file_the_reader_rejects_names_split_file_and_cause(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b\\ud800", "label": 0}\n', encoding="utf-8")
    with pytest.raises(DataValidationError) as err:
        TextClassificationData("json", {"train": str(path)}, cache_dir=str(tmp_path))
    assert str(err.value).startswith(
        f"split 'train' ({path}) cannot be read as json: ArrowInvalid: JSON parse error"
    )
    assert "row 1" in str(err.value), "the JSON reader counts rows from 0"


def test_word_without_a_tag_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [{"tokens": ["a", "b"], "tags": ["X", "Y"]}, {"tokens": ["c", "d"], "tags": ["X", None]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(
        DataValidationError,
        match=re.escape(f"split 'train', row 2 ({path} line 2), column 'tags': a word without a tag"),
    ):
        TokenTaggingData("json", {"train": str(path)}, cache_dir=str(tmp_path))


def test_unknown_empty_texts_policy(tmp_path: Path) -> None:
    with pytest.raises(ZooConfigError, match="empty_texts must be 'error' or 'drop', got 'skip'"):
        TextClassificationData("csv", {"train": good(tmp_path)}, empty_texts="skip", cache_dir=str(tmp_path))  # type: ignore[arg-type]


def test_rows_of_a_json_array_are_named_without_a_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    rows = [{"text": "a b", "label": 1}, {"text": "c", "label": 0.5}]
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    with pytest.raises(
        DataValidationError, match=r"^split 'train', row 2, column 'label': the label 0.5 is not a class"
    ):
        TextClassificationData("json", {"train": str(path)}, cache_dir=str(tmp_path))
