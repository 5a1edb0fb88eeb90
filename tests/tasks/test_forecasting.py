"""Forecaster: shapes, metrics and predictions in the original units."""

from __future__ import annotations

import pytest
import torch

from tests.tasks.tiny import loader, tiny_batch, tiny_model, trainer
from zoo import EncoderConfig, Forecaster


def test_metrics_and_predictions_are_in_original_units() -> None:
    torch.manual_seed(0)
    model = tiny_model("forecaster").eval()  # target_mean=[1.0], target_std=[2.0]
    batch = tiny_batch("forecaster")
    with torch.no_grad():
        normalised = model(batch["inputs"])
    assert normalised.shape == (6, 3, 1)
    real_pred, real_true = normalised * 2.0 + 1.0, batch["targets"] * 2.0 + 1.0
    result = trainer().validate(model, loader([batch]), verbose=False)[0]
    assert result["val_mae"] == pytest.approx(float((real_pred - real_true).abs().mean()), rel=1e-5)
    assert result["val_rmse"] == pytest.approx(float((real_pred - real_true).pow(2).mean().sqrt()), rel=1e-5)
    assert result["val_loss"] == pytest.approx(float((normalised - batch["targets"]).pow(2).mean()), rel=1e-5)
    torch.testing.assert_close(model.predict_step({"inputs": batch["inputs"]}), real_pred)


def test_bad_inputs_have_clear_errors() -> None:
    enc = EncoderConfig(hidden_size=8)
    with pytest.raises(ValueError, match="target_std must have 2 values"):
        Forecaster(enc, 3, 2, 4, target_std=[1.0])
    with pytest.raises(ValueError, match="target_std must be positive"):
        Forecaster(enc, 3, 1, 4, target_std=[0.0])
    with pytest.raises(ValueError, match="horizon must be at least 1"):
        Forecaster(enc, 3, 1, 0)
    model = tiny_model("forecaster")
    with pytest.raises(ValueError, match="num_features=2"):
        model(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="targets must have shape"):
        model.training_step({"inputs": torch.randn(2, 5, 2), "targets": torch.randn(2, 2, 1)}, 0)
