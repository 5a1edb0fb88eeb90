"""Multi-step forecasting of a multivariate series with a direct multi-output head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric

from zoo.tasks._common import (
    EncoderArg,
    check_at_least,
    default_optimizer,
    is_bidirectional,
    last_step,
    make_encoder,
    metric,
    output_size,
    plain_floats,
)


class Forecaster(L.LightningModule):
    """Forecast the next ``horizon`` steps of ``num_targets`` series from a window of ``num_features``.

    ``window [B, L, F] -> encoder -> state after the last step -> linear -> [B, horizon, num_targets]``, all
    horizons at once (a direct multi-output head, no feeding back of forecasts).

    Batch: ``{"inputs": Float[B, L, F], "targets": Float[B, horizon, C]}``, normalised by the data module.
    The loss (MSE) is on normalised values; ``val_mae`` and ``val_rmse`` (and ``test_*``) are in the
    original units: ``value * target_std + target_mean`` per target. ``predict_step`` returns the forecasts
    ``Float[B, horizon, C]`` in original units.

    Args:
        encoder: an ``EncoderConfig`` (or dict) built with ``input_size=num_features``, or a ready module
            with ``output_size`` (then ``load_from_checkpoint(path, encoder=...)``).
        num_features: inputs per step (link from the data module).
        num_targets: series forecast per step.
        horizon: steps forecast ahead.
        target_mean: per-target mean the data module subtracted (default 0).
        target_std: per-target standard deviation the data module divided by (default 1).
        dropout: dropout on the encoder's final output.
        learning_rate: AdamW learning rate (when no optimiser is configured from YAML).
        weight_decay: AdamW weight decay.
    """

    target_mean: Tensor
    target_std: Tensor

    def __init__(
        self,
        encoder: EncoderArg,
        num_features: int,
        num_targets: int,
        horizon: int,
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        dropout: float = 0.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        check_at_least("num_features", num_features, 1)
        check_at_least("num_targets", num_targets, 1)
        check_at_least("horizon", horizon, 1)
        target_mean = plain_floats(target_mean, num_targets, "target_mean", 0.0)
        target_std = plain_floats(target_std, num_targets, "target_std", 1.0)
        if any(s <= 0 for s in target_std):
            raise ValueError(f"target_std must be positive, got {target_std}")
        self.encoder, encoder_config = make_encoder(encoder, num_features)
        if encoder_config is None:
            self.save_hyperparameters(ignore=["encoder"])
        else:
            encoder = encoder_config  # the plain dict is what save_hyperparameters records
            self.save_hyperparameters()
        self.num_features = num_features
        self.num_targets = num_targets
        self.horizon = horizon
        self.bidirectional = is_bidirectional(self.encoder)
        self.register_buffer("target_mean", torch.tensor(target_mean), persistent=False)
        self.register_buffer("target_std", torch.tensor(target_std), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(output_size(self.encoder), horizon * num_targets)
        self.example_input_array = torch.zeros(2, 16, num_features)
        metrics: dict[str, Metric] = {}
        for stage in ("val", "test"):
            metrics[f"{stage}_mae"] = MeanAbsoluteError()
            metrics[f"{stage}_rmse"] = MeanSquaredError(squared=False)
        self.metrics = nn.ModuleDict(metrics)

    def encoder_inputs(self, inputs: Tensor) -> Tensor:
        """What the encoder reads: the window itself, checked ``[B, L, num_features]``."""
        if inputs.dim() != 3 or inputs.size(-1) != self.num_features:
            raise ValueError(
                f"inputs must have shape [batch, length, num_features={self.num_features}], "
                f"got {list(inputs.shape)}"
            )
        return inputs

    def forward(self, inputs: Tensor) -> Tensor:
        """Normalised forecasts ``[B, horizon, num_targets]`` for a window ``[B, L, num_features]``."""
        out, _ = self.encoder(self.encoder_inputs(inputs))
        lengths = torch.full((inputs.size(0),), inputs.size(1), dtype=torch.long, device=inputs.device)
        final = last_step(out, lengths, self.bidirectional)
        return self.head(self.dropout(final)).view(-1, self.horizon, self.num_targets)

    def denormalise(self, values: Tensor) -> Tensor:
        """Normalised ``[..., num_targets]`` values back to the original units."""
        return values * self.target_std + self.target_mean

    def _shared(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        preds, targets = self(batch["inputs"]), batch["targets"]
        if targets.shape != preds.shape:
            raise ValueError(
                f"targets must have shape [batch, horizon={self.horizon}, num_targets={self.num_targets}], "
                f"got {list(targets.shape)}"
            )
        return nn.functional.mse_loss(preds, targets), preds, targets

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss, _, targets = self._shared(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=targets.size(0))
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        loss, preds, targets = self._shared(batch)
        real_preds, real_targets = self.denormalise(preds).flatten(), self.denormalise(targets).flatten()
        mae, rmse = metric(self.metrics, f"{stage}_mae"), metric(self.metrics, f"{stage}_rmse")
        mae(real_preds, real_targets)
        rmse(real_preds, real_targets)
        n = targets.size(0)
        self.log(f"{stage}_loss", loss, on_epoch=True, sync_dist=True, batch_size=n, prog_bar=True)
        self.log(f"{stage}_mae", mae, on_epoch=True, prog_bar=True)
        self.log(f"{stage}_rmse", rmse, on_epoch=True)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> Tensor:
        """Forecasts ``[B, horizon, num_targets]`` in the original units."""
        return self.denormalise(self(batch["inputs"]))

    def configure_optimizers(self) -> Any:
        return default_optimizer(self, self.hparams["learning_rate"], self.hparams["weight_decay"])
