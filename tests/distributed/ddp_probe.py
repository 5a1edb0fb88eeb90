"""A test-only Lightning callback that records, per rank, what a distributed ``zoo fit`` did.

Given to the real CLI as ``--trainer.callbacks+=ddp_probe.DDPProbe --trainer.callbacks.out_dir DIR`` (with
this folder on ``PYTHONPATH``), it writes ``rank{R}.json`` (the training rows each rank saw, per epoch; the
per-step losses; the epoch metrics as each rank holds them; the tokenizer's vocabulary) and
``weights_rank{R}.pt`` (the final ``state_dict``) into ``out_dir``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


def _rows(batch: Any) -> list[list[int]]:
    """The token ids of every row of a batch, cut to its real length when the batch has ``lengths``."""
    ids = batch["input_ids"].detach().cpu()
    lengths = batch.get("lengths")
    if lengths is None:
        return [row.tolist() for row in ids]
    return [row[: int(n)].tolist() for row, n in zip(ids, lengths.cpu(), strict=True)]


class DDPProbe(Callback):
    """Record per-rank training data, losses, metrics and final weights into ``out_dir``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.epochs: list[list[list[list[int]]]] = []  # epoch -> batch -> row -> token ids
        self.val_rows: list[list[int]] = []
        self.losses: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append([])

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.epochs[-1].append(_rows(batch))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach()))

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self.val_rows.extend(_rows(batch))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_rows = []  # keep the last validation epoch only

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank = trainer.global_rank
        self.out_dir.mkdir(parents=True, exist_ok=True)
        dm = trainer.datamodule
        tokenizer = getattr(dm, "tokenizer", None)
        vocab = tokenizer.get_vocab() if tokenizer is not None else {}
        record = {
            "rank": rank,
            "world_size": trainer.world_size,
            "epochs": self.epochs,
            "val_rows": self.val_rows,
            "losses": self.losses,
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
            "vocab_sha": hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest(),
            "vocab_size": len(vocab),
            "tokenizer_path": str(getattr(dm, "tokenizer_path", "") or ""),
            "global_step": trainer.global_step,
        }
        (self.out_dir / f"rank{rank}.json").write_text(json.dumps(record))
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.out_dir / f"weights_rank{rank}.pt")
