"""Sequence classification: token ids -> embedding -> recurrent encoder -> pooling -> linear."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from zoo.tasks._common import (
    EncoderArg,
    check_at_least,
    check_pad_id,
    check_token_ids,
    default_optimizer,
    is_bidirectional,
    lengths_or_full,
    make_encoder,
    metric,
    output_size,
    plain_names,
    pool,
)

POOLINGS = ("last", "mean", "max")


class SequenceClassifier(L.LightningModule):
    """Classify whole sequences of token ids.

    ``embedding (padding_idx=pad_id) -> encoder -> pooling over real steps -> dropout -> linear``.
    With a bidirectional encoder, ``"last"`` pooling joins the forward direction at the last real step and
    the backward direction at step 0, so both halves have read the whole sequence.

    Batch: ``{"input_ids": Long[B, T], "lengths": Long[B], "labels": Long[B]}`` (``lengths`` optional:
    full length when absent). Logs ``train_loss`` per step; ``val_loss``, ``val_acc``, ``val_f1`` (macro)
    and ``test_*`` per epoch. ``predict_step`` returns ``{"labels": Long[B], "probs": Float[B, C]}``.

    Args:
        encoder: an ``EncoderConfig`` (or a dict of its fields) built with ``input_size=embedding_dim``, or
            a ready module exposing ``output_size``. A module is not saved in the hyperparameters:
            ``load_from_checkpoint(path, encoder=module)`` then needs it again.
        vocab_size: rows of the embedding (link from the data module).
        num_classes: number of labels, at least 2.
        embedding_dim: size of each token's embedding.
        pooling: ``"last"``, ``"mean"`` or ``"max"`` over real steps.
        dropout: dropout on the pooled vector.
        pad_id: the padding token id (its embedding stays zero).
        label_names: optional names of the labels, saved with the model.
        learning_rate: AdamW learning rate (when no optimiser is configured from YAML).
        weight_decay: AdamW weight decay.
    """

    def __init__(
        self,
        encoder: EncoderArg,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 128,
        pooling: str = "last",
        dropout: float = 0.1,
        pad_id: int = 0,
        label_names: Sequence[str] | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        check_at_least("vocab_size", vocab_size, 1)
        check_at_least("num_classes", num_classes, 2, " (a classifier needs two labels or more)")
        check_pad_id(pad_id, vocab_size)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        label_names = plain_names(label_names, num_classes, "label_names")
        self.encoder, encoder_config = make_encoder(encoder, embedding_dim)
        if encoder_config is None:
            self.save_hyperparameters(ignore=["encoder"])
        else:
            encoder = encoder_config  # the plain dict is what save_hyperparameters records
            self.save_hyperparameters()
        self.vocab_size = vocab_size
        self.num_classes = num_classes
        self.pooling = pooling
        self.label_names = label_names
        self.bidirectional = is_bidirectional(self.encoder)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(output_size(self.encoder), num_classes)
        self.example_input_array = torch.zeros(2, 8, dtype=torch.long)
        self.train_acc = MulticlassAccuracy(num_classes)
        metrics: dict[str, Metric] = {}
        for stage in ("val", "test"):
            metrics[f"{stage}_acc"] = MulticlassAccuracy(num_classes)
            metrics[f"{stage}_f1"] = MulticlassF1Score(num_classes, average="macro")
        self.metrics = nn.ModuleDict(metrics)

    def encoder_inputs(self, input_ids: Tensor) -> Tensor:
        """What the encoder reads: the embeddings ``[B, T, embedding_dim]``."""
        check_token_ids(input_ids, self.vocab_size)
        return self.embedding(input_ids)

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits ``[B, num_classes]`` for ``input_ids`` ``[B, T]`` (``lengths`` ``[B]``, optional)."""
        if lengths is None:
            lengths = lengths_or_full({}, input_ids)
        out, _ = self.encoder(self.encoder_inputs(input_ids), lengths=lengths)
        pooled = pool(out, lengths, self.pooling, self.bidirectional)
        return self.head(self.dropout(pooled))

    def _shared(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        input_ids = batch["input_ids"]
        logits = self(input_ids, lengths_or_full(batch, input_ids))
        labels = batch["labels"]
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise ValueError(
                f"the batch holds label {int(labels.max())} but num_classes={self.num_classes}: "
                "link num_classes from the data module"
            )
        return nn.functional.cross_entropy(logits, labels), logits, labels

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss, logits, labels = self._shared(batch)
        self.train_acc(logits, labels)
        self.log("train_loss", loss, prog_bar=True, batch_size=labels.size(0))
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=labels.size(0))
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        loss, logits, labels = self._shared(batch)
        acc, f1 = metric(self.metrics, f"{stage}_acc"), metric(self.metrics, f"{stage}_f1")
        acc(logits, labels)
        f1(logits, labels)
        n = labels.size(0)
        self.log(f"{stage}_loss", loss, on_epoch=True, sync_dist=True, batch_size=n, prog_bar=True)
        self.log(f"{stage}_acc", acc, on_epoch=True, batch_size=n, prog_bar=True)
        self.log(f"{stage}_f1", f1, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, Tensor]:
        """``{"labels": Long[B], "probs": Float[B, num_classes]}`` for a batch (labels not needed)."""
        input_ids = batch["input_ids"]
        probs = self(input_ids, lengths_or_full(batch, input_ids)).softmax(-1)
        return {"labels": probs.argmax(-1), "probs": probs}

    def configure_optimizers(self) -> Any:
        return default_optimizer(self, self.hparams["learning_rate"], self.hparams["weight_decay"])
