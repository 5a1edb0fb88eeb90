"""Learning, not only running: each task beats chance by a wide margin on generated data, through the
real Lightning Trainer; and Trainer checkpoints load with ``weights_only=True``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.tasks.tiny import TASKS, loader, outputs, tiny_batch, tiny_model, trainer
from zoo import EncoderConfig, Forecaster, LanguageModel, RecurrentEncoder, SequenceClassifier, TokenTagger

Batches = list[dict[str, Any]]


def _text_batches(n_batches: int, seed: int, task: str) -> Batches:
    """Padded batches of 16: class 0 draws tokens from 1..9, class 1 from 10..19; tags are ``token % 4``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        lengths = torch.randint(3, 9, (16,), generator=gen)
        real = torch.arange(8).unsqueeze(0) < lengths.unsqueeze(1)
        labels = torch.randint(0, 2, (16,), generator=gen)
        ids = torch.randint(1, 10, (16, 8), generator=gen) + 9 * labels.unsqueeze(1)
        ids = ids.masked_fill(~real, 0)
        batch: dict[str, Any] = {"input_ids": ids, "lengths": lengths}
        if task == "classifier":
            batch["labels"] = labels
        else:
            batch["tags"] = (ids % 4).masked_fill(~real, -100)
        out.append(batch)
    return out


def test_classifier_separates_two_token_distributions() -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(EncoderConfig(hidden_size=16), 20, 2, embedding_dim=16, learning_rate=0.01)
    trainer(max_epochs=3).fit(model, loader(_text_batches(16, 0, "classifier")))
    result = trainer().validate(model, loader(_text_batches(4, 1, "classifier")), verbose=False)[0]
    assert result["val_acc"] >= 0.95 and result["val_f1"] >= 0.95  # chance: 0.5


def test_tagger_learns_a_token_to_tag_mapping() -> None:
    torch.manual_seed(0)
    model = TokenTagger(
        vocab_size=20,
        num_tags=4,
        embedding_dim=16,
        encoder=EncoderConfig(hidden_size=16, bidirectional=True),
        learning_rate=0.02,
    )
    trainer(max_epochs=3).fit(model, loader(_text_batches(16, 0, "tagger")))
    result = trainer().validate(model, loader(_text_batches(4, 1, "tagger")), verbose=False)[0]
    assert result["val_acc"] >= 0.9 and result["val_f1"] >= 0.85  # chance: about 0.25


def _stream(rows: int, windows: int, seed: int) -> Batches:
    """Truncated-BPTT windows of a deterministic cycle through all 20 tokens in a fixed random order."""
    order = torch.randperm(20, generator=torch.Generator().manual_seed(123))
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 20, (rows, 1), generator=gen)
    pos = (start + torch.arange(windows * 8 + 1)) % 20
    tokens = order[pos]  # [rows, windows * 8 + 1]
    return [
        {
            "input_ids": tokens[:, w * 8 : (w + 1) * 8],
            "targets": tokens[:, w * 8 + 1 : (w + 1) * 8 + 1],
            "reset": torch.tensor(w == 0),
        }
        for w in range(windows)
    ]


def test_language_model_learns_a_deterministic_sequence() -> None:
    torch.manual_seed(0)
    model = LanguageModel(
        EncoderConfig(hidden_size=32), 20, embedding_dim=16, dropout=0.0, learning_rate=0.02
    )
    trainer(max_epochs=4).fit(model, loader(_stream(16, 10, 0)), loader(_stream(8, 3, 1)))
    result = trainer().validate(model, loader(_stream(8, 3, 2)), verbose=False)[0]
    assert result["val_ppl"] < 1.5  # a uniform guess: 20
    assert math.isclose(result["val_ppl"], math.exp(result["val_loss"]), rel_tol=1e-4)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(123)).tolist()
    new = model.generate(order[:3], 10, temperature=0)
    assert new == [order[(3 + i) % 20] for i in range(10)]


def _sine_windows(n: int, seed: int, mean: float, std: float) -> tuple[Batches, float]:
    """Windows of 24 steps of a noisy sine, horizon 3, normalised; and the last-value baseline's MAE."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n + 27, dtype=torch.float32)
    series = torch.sin(2 * math.pi * t / 20) + 0.1 * torch.randn(n + 27, generator=gen)
    windows = series.unfold(0, 27, 1)[:n]  # [n, 27]
    inputs, targets = windows[:, :24].unsqueeze(-1), windows[:, 24:].unsqueeze(-1)
    baseline = float((targets - inputs[:, -1:]).abs().mean())  # original units
    batches = [
        {"inputs": (inputs[i : i + 64] - mean) / std, "targets": (targets[i : i + 64] - mean) / std}
        for i in range(0, n, 64)
    ]
    return batches, baseline


def test_forecaster_beats_the_last_value_baseline() -> None:
    torch.manual_seed(0)
    mean, std = 0.0, 0.72
    train, _ = _sine_windows(640, 0, mean, std)
    val, baseline = _sine_windows(256, 1, mean, std)
    enc = EncoderConfig(hidden_size=16)
    model = Forecaster(enc, 1, 1, 3, target_mean=[mean], target_std=[std], learning_rate=0.02)
    trainer(max_epochs=6).fit(model, loader(train))
    result = trainer().validate(model, loader(val), verbose=False)[0]
    assert result["val_mae"] < 0.6 * baseline, (result, baseline)


@pytest.mark.parametrize("task", TASKS)
def test_trainer_checkpoint_loads_weights_only_and_rebuilds(task: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model(task, "lstm")
    batch = tiny_batch(task)
    trainer(max_steps=2, enable_model_summary=True, default_root_dir=tmp_path).fit(model, loader([batch]))
    path = tmp_path / "last.ckpt"
    model.trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert raw["hyper_parameters"] == dict(model.hparams)
    loaded = type(model).load_from_checkpoint(path, weights_only=True)
    assert torch.equal(outputs(model, batch), outputs(loaded, batch))


def test_custom_encoder_module_must_be_passed_again_to_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(RecurrentEncoder("gru", 8, 8), 20, 3, embedding_dim=8)
    batch = tiny_batch("classifier")
    trainer(max_steps=1, default_root_dir=tmp_path).fit(model, loader([batch]))
    path = tmp_path / "custom.ckpt"
    model.trainer.save_checkpoint(path)
    with pytest.raises(TypeError, match="encoder"):
        SequenceClassifier.load_from_checkpoint(path, weights_only=True)
    loaded = SequenceClassifier.load_from_checkpoint(
        path, weights_only=True, encoder=RecurrentEncoder("gru", 8, 8)
    )
    assert torch.equal(outputs(model, batch), outputs(loaded, batch))
