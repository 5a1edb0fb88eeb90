"""Tiny task models and batches shared by the task tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from zoo import EncoderConfig, Forecaster, LanguageModel, SequenceClassifier, TokenTagger

VOCAB, HIDDEN, TIME, BATCH = 20, 8, 8, 6
TASKS = ("classifier", "language_model", "tagger", "forecaster")

Batch = dict[str, Any]


def tiny_model(task: str, cell: str = "gru", **overrides: Any) -> L.LightningModule:
    """A task model with hidden size 8 and vocabulary 20; no dropout, a high learning rate."""
    bidirectional = overrides.pop("bidirectional", task == "tagger")
    enc = EncoderConfig(cell=cell, hidden_size=HIDDEN, bidirectional=bidirectional)
    common: dict[str, Any] = {"dropout": 0.0, "learning_rate": 0.05}
    common.update(overrides)
    if task == "classifier":
        return SequenceClassifier(enc, VOCAB, 3, embedding_dim=8, **common)
    if task == "language_model":
        return LanguageModel(enc, VOCAB, embedding_dim=8, **common)
    if task == "tagger":
        return TokenTagger(enc, vocab_size=VOCAB, num_tags=4, embedding_dim=8, **common)
    if task == "forecaster":
        return Forecaster(
            enc, num_features=2, num_targets=1, horizon=3, target_mean=[1.0], target_std=[2.0], **common
        )
    raise ValueError(task)


def tiny_batch(task: str, seed: int = 0) -> Batch:
    """One fixed batch in the task's batch format (padded text batches with mixed lengths)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([8, 7, 6, 5, 4, 3])
    real = torch.arange(TIME).unsqueeze(0) < lengths.unsqueeze(1)
    ids = torch.randint(1, VOCAB, (BATCH, TIME), generator=gen).masked_fill(~real, 0)
    if task == "classifier":
        return {"input_ids": ids, "lengths": lengths, "labels": torch.randint(0, 3, (BATCH,), generator=gen)}
    if task == "language_model":
        ids = torch.randint(0, VOCAB, (BATCH, TIME + 1), generator=gen)
        return {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "reset": torch.tensor(True)}
    if task == "tagger":
        tags = torch.randint(0, 4, (BATCH, TIME), generator=gen).masked_fill(~real, -100)
        return {"input_ids": ids, "lengths": lengths, "tags": tags}
    if task == "forecaster":
        return {
            "inputs": torch.randn(BATCH, TIME, 2, generator=gen),
            "targets": torch.randn(BATCH, 3, 1, generator=gen),
        }
    raise ValueError(task)


def outputs(model: L.LightningModule, batch: Batch) -> torch.Tensor:
    """The model's deterministic output on a batch (eval mode)."""
    model.eval()
    with torch.no_grad():
        if "inputs" in batch:
            return model(batch["inputs"])
        if "targets" in batch:
            return model(batch["input_ids"])[0]
        return model(batch["input_ids"], batch["lengths"])


def loader(batches: Iterable[Batch]) -> DataLoader:
    """A DataLoader yielding ready-made batch dicts as they are."""
    return DataLoader(list(batches), batch_size=None, shuffle=False)


def trainer(**kwargs: Any) -> L.Trainer:
    """A quiet CPU trainer."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    options.update(kwargs)
    return L.Trainer(**options)
