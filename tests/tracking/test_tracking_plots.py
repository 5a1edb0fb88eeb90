"""The plots logged with a run: learning curves grouped by metric, and the GRU gate heatmap."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from tracking_toys import ToyClassifier, ToyTextData

from zoo.tracking.callbacks import RunInfoCallback
from zoo.tracking.plots import gate_heatmap, learning_curves, metric_groups

PNG = b"\x89PNG"


def test_metrics_are_grouped_by_what_they_measure() -> None:
    groups = metric_groups(["train_loss_step", "train_loss_epoch", "val_loss", "val_acc", "lr-AdamW"])
    assert groups == {
        "acc": ["val_acc"],
        "loss": ["train_loss_epoch", "train_loss_step", "val_loss"],
        "lr-AdamW": ["lr-AdamW"],
    }


def test_learning_curves_are_drawn_from_a_metric_history(tmp_path: Path) -> None:
    history = {
        "train_loss": [(0, 1.0), (1, 0.5)],
        "val_loss": [(1, 0.7)],
        "val_acc": [(1, 0.6)],
        "epoch": [(1, 0)],
    }
    path = learning_curves(history, tmp_path / "curves.png")
    assert path is not None and path.read_bytes()[:4] == PNG
    assert learning_curves({}, tmp_path / "none.png") is None


def test_gate_heatmap_of_one_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the callback's own path, with ``zoo.tasks.gate_activations`` as the task API defines it."""

    def gate_activations(model: ToyClassifier, input_ids: torch.Tensor) -> list[dict]:
        with torch.no_grad():
            _, _, gates = model.encoder.forward_with_gates(model.embedding(input_ids[None]))
        return [{name: g[0].numpy() for name, g in layer.items()} for layer in gates]

    fake = types.ModuleType("zoo.tasks")
    fake.gate_activations = gate_activations  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zoo.tasks", fake)
    data = ToyTextData()
    model = ToyClassifier(vocab_size=data.vocab_size)
    trainer = types.SimpleNamespace(val_dataloaders=data.val_dataloader(), datamodule=data)
    path = RunInfoCallback._gate_plot(trainer, model, tmp_path / "gates.png", gate_heatmap)  # type: ignore[arg-type]
    assert path is not None and path.read_bytes()[:4] == PNG
    assert model.training  # the mode is restored
    assert gate_heatmap([], ["a"], tmp_path / "empty.png") is None
