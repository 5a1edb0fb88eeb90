"""Every class of user mistake in a recipe or its data: exit status 2, the cause on the first line of
stderr (``zoo: error: ...``), no traceback, nothing trained. Real ``python -m zoo fit`` subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import REPO, run_zoo

QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")
TINY = ("--trainer.fast_dev_run", "1")

TRAIN = "text,label\ngood movie,pos\nbad movie,neg\nfine film,pos\nawful,neg\n"
VALIDATION = "text,label\ngreat,pos\nmeh,zzz\n"
CSV_RECIPE = """\
trainer:
  max_epochs: 1
model:
  class_path: zoo.tasks.SequenceClassifier
  init_args:
    encoder: {cell: gru, hidden_size: 8}
    embedding_dim: 8
data:
  class_path: zoo.data.TextClassificationData
  init_args:
    path: csv
    data_files: {train: train.csv}
    text_column: text
    label_column: label
    min_frequency: 1
    batch_size: 2
"""

#: (case, recipe, extra arguments, the first line of stderr)
CASES = [
    (
        "encoder_key_typo",
        QUICKSTART,
        ["--model.encoder.hiden_size", "3"],
        "zoo: error: --model.encoder.hiden_size: the encoder has no key 'hiden_size' (did you mean "
        "'hidden_size'?). Its keys: cell, hidden_size, num_layers,",
    ),
    (
        "model_key_typo",
        QUICKSTART,
        ["--model.learning_rat", "0.1"],
        "zoo: error: --model.learning_rat: zoo.tasks.SequenceClassifier has no parameter 'learning_rat' "
        "(did you mean 'learning_rate'?). Its parameters: encoder,",
    ),
    (
        "data_key_typo",
        QUICKSTART,
        ["--data.batch_sise", "3"],
        "zoo: error: --data.batch_sise: zoo.data.CuisineMemoryData has no parameter 'batch_sise' (did you "
        "mean 'batch_size'?).",
    ),
    (
        "trainer_key_typo",
        QUICKSTART,
        ["--trainer.max_epochz", "3"],
        "zoo: error: unknown option 'trainer.max_epochz' (did you mean 'trainer.max_epochs'?). Options of "
        "trainer:",
    ),
    (
        "key_typo_in_recipe_file",
        "typo.yaml",
        [],
        "zoo: error: unknown option 'tracking.log_modle' (did you mean 'tracking.log_model'?).",
    ),
    (
        "wrong_class_path",
        QUICKSTART,
        ["--model.class_path", "zoo.tasks.SequenceClassifer"],
        "zoo: error: --model.class_path: cannot import 'zoo.tasks.SequenceClassifer' (module 'zoo.tasks' has "
        "no attribute 'SequenceClassifer') (did you mean 'SequenceClassifier'?).",
    ),
    (
        "wrong_value_type",
        QUICKSTART,
        ["--trainer.max_epochs", "abc"],
        "zoo: error: --trainer.max_epochs: Expected a <class 'int'>, got abc",
    ),
    (
        "registered_model_without_log_model",
        QUICKSTART,
        ["--tracking.log_model", "false"],
        "zoo: error: tracking.registered_model_name='cuisine-gru' needs tracking.log_model=true: only a "
        "logged model can be registered.",
    ),
    (
        "missing_column",
        "csv.yaml",
        ["--data.text_column", "sentence"],
        "zoo: error: column(s) ['sentence'] for text classification not in split 'train'; the columns there "
        "are ['text', 'label']",
    ),
    (
        "label_outside_label_set",
        "csv.yaml",
        ["--data.data_files.validation", "validation.csv"],
        "zoo: error: labels ['zzz'] in split 'validation' are outside the label set ['neg', 'pos'] (row 2 "
        "(validation.csv line 3), column 'label');",
    ),
    (
        "missing_data_file",
        "csv.yaml",
        ["--data.data_files.train", "trian.csv"],
        "zoo: error: data.data_files.train: data file not found: trian.csv",
    ),
    (
        "missing_tokenizer_file",
        "csv.yaml",
        ["--data.tokenizer_file", "missing.json"],
        "zoo: error: TextClassificationData: tokenizer file not found: missing.json.",
    ),
    (
        "malformed_tokenizer_file",
        "csv.yaml",
        ["--data.tokenizer_file", "broken.json"],
        "zoo: error: TextClassificationData: tokenizer file broken.json is not a tokenizer.json the "
        "tokenizers library can read",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "args", "first_line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_mistake_exits_2_with_the_cause_first(
    tmp_path: Path, recipe: str, args: list[str], first_line: str
) -> None:
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "validation.csv").write_text(VALIDATION)
    (tmp_path / "broken.json").write_text('{"nope": 1')
    (tmp_path / "csv.yaml").write_text(CSV_RECIPE)
    (tmp_path / "typo.yaml").write_text(
        Path(QUICKSTART).read_text().replace("  log_model: true", "  log_modle: true")
    )
    result = run_zoo("fit", "-c", recipe, *TINY, *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.output
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith(first_line), result.stderr
    assert "Traceback" not in result.output
    assert len(lines) <= 3, result.stderr  # the cause and a hint, not a report
    assert not (tmp_path / "mlflow.db").exists()  # stopped before a run was opened


@pytest.mark.slow
def test_unknown_command_suggests_the_closest(tmp_path: Path) -> None:
    result = run_zoo("fitt", "-c", QUICKSTART, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.output
    assert result.stderr.splitlines()[0].startswith(
        "zoo: error: unknown command 'fitt' (did you mean 'fit'?). Training commands: fit, validate, test"
    )
