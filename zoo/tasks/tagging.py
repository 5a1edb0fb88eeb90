"""Token tagging (part-of-speech, named entities, copy tasks): one label per token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from zoo.encoder import EncoderConfig
from zoo.tasks._common import (
    EncoderArg,
    check_at_least,
    check_pad_id,
    check_token_ids,
    default_optimizer,
    lengths_or_full,
    make_encoder,
    metric,
    output_size,
    plain_names,
)

IGNORE_INDEX = -100
BIDIRECTIONAL_ENCODER = EncoderConfig(bidirectional=True)
"""The tagger's default encoder: a tag may depend on the words after it."""


class TokenTagger(L.LightningModule):
    """Tag every token: ``embedding -> encoder (bidirectional by default) -> dropout -> linear``.

    Batch: ``{"input_ids": Long[B, T], "lengths": Long[B], "tags": Long[B, T]}`` with ``-100`` on padding,
    which the loss and the metrics ignore. Logs ``train_loss`` per step; ``val_loss``, ``val_acc`` (token
    accuracy), ``val_f1`` (macro over tags) and ``test_*`` per epoch. ``predict_step`` returns
    ``{"tags": list[list[int]]}``, each sequence's tag ids cut to its length.

    The sizes are keyword-only so that the encoder can keep its bidirectional default.

    Args:
        encoder: an ``EncoderConfig`` (or dict) built with ``input_size=embedding_dim`` (default: a
            bidirectional GRU), or a ready module with ``output_size`` (then
            ``load_from_checkpoint(path, encoder=...)``).
        vocab_size: rows of the embedding (link from the data module).
        num_tags: number of tags, at least 2.
        embedding_dim: size of each token's embedding.
        dropout: dropout on the encoder's output.
        pad_id: the padding token id (its embedding stays zero).
        tag_names: optional names of the tags, saved with the model.
        learning_rate: AdamW learning rate (when no optimiser is configured from YAML).
        weight_decay: AdamW weight decay.
    """

    def __init__(
        self,
        encoder: EncoderArg = BIDIRECTIONAL_ENCODER,
        *,
        vocab_size: int,
        num_tags: int,
        embedding_dim: int = 128,
        dropout: float = 0.1,
        pad_id: int = 0,
        tag_names: Sequence[str] | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        check_at_least("vocab_size", vocab_size, 1)
        check_at_least("num_tags", num_tags, 2, " (link it from the data module's num_tags)")
        check_pad_id(pad_id, vocab_size)
        tag_names = plain_names(tag_names, num_tags, "tag_names")
        self.encoder, encoder_config = make_encoder(encoder, embedding_dim)
        if encoder_config is None:
            self.save_hyperparameters(ignore=["encoder"])
        else:
            encoder = encoder_config  # the plain dict is what save_hyperparameters records
            self.save_hyperparameters()
        self.vocab_size = vocab_size
        self.num_tags = num_tags
        self.tag_names = tag_names
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(output_size(self.encoder), num_tags)
        self.example_input_array = torch.zeros(2, 8, dtype=torch.long)
        metrics: dict[str, Metric] = {}
        for stage in ("val", "test"):
            metrics[f"{stage}_acc"] = MulticlassAccuracy(num_tags, average="micro", ignore_index=IGNORE_INDEX)
            metrics[f"{stage}_f1"] = MulticlassF1Score(num_tags, average="macro", ignore_index=IGNORE_INDEX)
        self.metrics = nn.ModuleDict(metrics)

    def encoder_inputs(self, input_ids: Tensor) -> Tensor:
        """What the encoder reads: the embeddings ``[B, T, embedding_dim]``."""
        check_token_ids(input_ids, self.vocab_size)
        return self.embedding(input_ids)

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Tag logits ``[B, T, num_tags]`` for ``input_ids`` ``[B, T]``."""
        out, _ = self.encoder(self.encoder_inputs(input_ids), lengths=lengths)
        return self.head(self.dropout(out))

    def _shared(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        input_ids, tags = batch["input_ids"], batch["tags"]
        if tags.shape != input_ids.shape:
            raise ValueError(
                f"tags must have the shape of input_ids {list(input_ids.shape)}, got {list(tags.shape)}"
            )
        if tags.numel() and int(tags.max()) >= self.num_tags:
            raise ValueError(
                f"the batch holds tag {int(tags.max())} but num_tags={self.num_tags}: "
                "link num_tags from the data module"
            )
        logits = self(input_ids, batch.get("lengths"))
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, self.num_tags), tags.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return loss, logits, tags

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss, _, tags = self._shared(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=tags.size(0))
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        loss, logits, tags = self._shared(batch)
        preds, target = logits.reshape(-1, self.num_tags), tags.reshape(-1)
        acc, f1 = metric(self.metrics, f"{stage}_acc"), metric(self.metrics, f"{stage}_f1")
        acc(preds, target)
        f1(preds, target)
        n = int((tags != IGNORE_INDEX).sum())
        self.log(f"{stage}_loss", loss, on_epoch=True, sync_dist=True, batch_size=max(n, 1), prog_bar=True)
        self.log(f"{stage}_acc", acc, on_epoch=True, prog_bar=True)
        self.log(f"{stage}_f1", f1, on_epoch=True)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, list[list[int]]]:
        """``{"tags": [[tag id per real token] per sequence]}``."""
        input_ids = batch["input_ids"]
        lengths = lengths_or_full(batch, input_ids)
        best = self(input_ids, batch.get("lengths")).argmax(-1).tolist()
        return {"tags": [row[: int(n)] for row, n in zip(best, lengths.tolist(), strict=True)]}

    def configure_optimizers(self) -> Any:
        return default_optimizer(self, self.hparams["learning_rate"], self.hparams["weight_decay"])
