"""`zoo fit` with a character-level word encoder: the character vocabulary is linked, saved with the model,
and the logged model reads new words' characters when it predicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_support import run_zoo

from zoo.tracking.load import load_model

SUFFIX_TAG = {"ing": "VERB", "ly": "ADV"}


def write_rows(path: Path, stems: list[str]) -> None:
    rows = []
    for i, stem in enumerate(stems):
        words = [stem + "ing", stems[(i + 1) % len(stems)] + "ly"]
        rows.append({"w": words, "t": [SUFFIX_TAG["ing"], SUFFIX_TAG["ly"]]})
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")


@pytest.mark.slow
def test_fit_links_the_char_vocabulary_and_the_logged_model_predicts_with_characters(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", ["walk", "talk", "quick", "slow", "sing", "read"])
    files = f"{{train: {tmp_path / 'train.jsonl'}, validation: {tmp_path / 'train.jsonl'}}}"
    result = run_zoo(
        "fit",
        "--model", "zoo.tasks.TokenTagger",
        "--model.encoder", "{cell: gru, hidden_size: 8, bidirectional: true}",
        "--model.embedding_dim", "8",
        "--model.char_encoder", "{cell: gru, hidden_size: 6}",
        "--data", "zoo.data.TokenTaggingData",
        "--data.path", "json", "--data.data_files", files,
        "--data.tokens_column", "w", "--data.tags_column", "t",
        "--data.chars", "true", "--data.max_word_chars", "6",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--tracking.log_model", "true", "--tracking.registered_model_name", "chars",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    model = load_model("models:/chars/1", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    task = model.task
    assert task.char_vocab is not None and "w" in task.char_vocab and task.hparams["max_word_chars"] == 6
    assert task.char_encoder is not None and task.char_encoder.bidirectional
    out = model.predict(["jumping gladly", "walking"])
    words = [["jumping", "gladly"], ["walking"]]
    assert [o["words"] for o in out] == words
    ids = [model.tokenizer.encode(w, is_pretokenized=True, add_special_tokens=False).ids for w in words]
    for row, sentence in enumerate(words):
        with torch.no_grad():
            logits = task(torch.tensor([ids[row]]), None, task.char_ids_of([sentence]))
        names = task.hparams["tag_names"]
        assert out[row]["tags"] == [names[int(t)] for t in logits[0].argmax(-1)]
