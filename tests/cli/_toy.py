"""Small LightningModule/LightningDataModule pairs whose arguments mirror the zoo's interfaces.

They let the CLI machinery (linking, defaults, errors) be tested through the real ``zoo`` entry point on
toy data that trains in a second, independently of the real tasks and data modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.encoder import EncoderConfig, build_encoder


class ToyClassifier(L.LightningModule):
    """Embedding -> encoder -> last step -> linear, with the linked sizes as plain arguments."""

    def __init__(
        self,
        encoder: EncoderConfig | nn.Module,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 8,
        pad_id: int = 0,
        label_names: list[str] | None = None,
        learning_rate: float = 1e-2,
    ) -> None:
        super().__init__()
        if isinstance(encoder, EncoderConfig):
            self.save_hyperparameters({"encoder": vars(encoder).copy()})
        self.save_hyperparameters(ignore=["encoder"])
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.encoder = build_encoder(encoder, embedding_dim)
        self.head = nn.Linear(self.encoder.output_size, num_classes)
        self.learning_rate = learning_rate

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder(self.embed(input_ids))
        return self.head(out[:, -1])

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss)
        self.log(f"{stage}_acc", (logits.argmax(-1) == y).float().mean())
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0]).argmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class ToyForecaster(L.LightningModule):
    """Takes only the time-series sizes, so links meant for text tasks must not reach it."""

    # what the checkpoint callback monitors (it logs no val_loss)
    main_metric = ("val_mae", "min")

    def __init__(
        self,
        encoder: EncoderConfig | nn.Module,
        num_features: int,
        num_targets: int,
        horizon: int,
        target_mean: list[float] | None = None,
        target_std: list[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(encoder, EncoderConfig):
            self.save_hyperparameters({"encoder": vars(encoder).copy()})
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = build_encoder(encoder, num_features)
        self.head = nn.Linear(self.encoder.output_size, num_targets * horizon)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out, _ = self.encoder(x)
        loss = nn.functional.mse_loss(self.head(out[:, -1]), y.flatten(1))
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        out, _ = self.encoder(x)
        self.log("val_mae", (self.head(out[:, -1]) - y.flatten(1)).abs().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class ToyTextData(L.LightningDataModule):
    """Sequences whose first token names the class; sizes known right after ``__init__``.

    Args:
        num_classes_wanted: how many classes to generate (a data setting, so it is not named like the
            model's ``num_classes``).
        distance: filler tokens after the class token.
        num_examples: generated training examples.
        batch_size: examples per batch.
        data_files: optional local file whose existence is checked (stands in for real corpora).
    """

    def __init__(
        self,
        num_classes_wanted: int = 3,
        distance: int = 5,
        num_examples: int = 256,
        batch_size: int = 32,
        data_files: dict[str, str] | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(data_files, str):
            data_files = {"train": data_files}
        for split, path in (data_files or {}).items():
            if not Path(path).exists():
                raise FileNotFoundError(f"data file for split {split!r} not found: {path}")
        self.num_classes = num_classes_wanted
        self.label_names = [f"class{i}" for i in range(num_classes_wanted)]
        self.pad_id = 0
        self.vocab_size = num_classes_wanted + 11
        self.distance = distance
        self.num_examples = num_examples
        self.batch_size = batch_size

    def _dataset(self, n: int, seed: int) -> TensorDataset:
        gen = torch.Generator().manual_seed(seed)
        labels = torch.randint(self.num_classes, (n,), generator=gen)
        fillers = torch.randint(self.num_classes + 1, self.vocab_size, (n, self.distance), generator=gen)
        return TensorDataset(torch.cat([labels.unsqueeze(1) + 1, fillers], 1), labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.num_examples, 0), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(128, 1), batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(128, 2), batch_size=self.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(16, 3), batch_size=self.batch_size)


class ToySeriesData(L.LightningDataModule):
    """Noisy sine windows; exposes the time-series sizes only."""

    def __init__(self, input_length: int = 12, forecast_steps: int = 2, batch_size: int = 16) -> None:
        super().__init__()
        self.num_features = 1
        self.num_targets = 1
        self.horizon = forecast_steps
        self.input_length = input_length
        self.target_mean = [0.0]
        self.target_std = [1.0]
        self.batch_size = batch_size

    def _dataset(self) -> TensorDataset:
        t = torch.arange(400, dtype=torch.float32)
        s = torch.sin(t / 5)
        n = len(s) - self.input_length - self.horizon
        x = torch.stack([s[i : i + self.input_length] for i in range(n)]).unsqueeze(-1)
        y = torch.stack([s[i + self.input_length : i + self.input_length + self.horizon] for i in range(n)])
        return TensorDataset(x, y.unsqueeze(-1))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(), batch_size=self.batch_size)
