"""Token tagging (part-of-speech, named entities, copy tasks): one label per token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from zoo.data.chars import CHAR_PAD_ID, CHAR_UNK_ID, DEFAULT_MAX_WORD_CHARS, char_batch, check_max_word_chars
from zoo.encoder import EncoderConfig
from zoo.tasks._common import (
    EncoderArg,
    check_at_least,
    check_pad_id,
    check_token_ids,
    default_optimizer,
    is_bidirectional,
    last_step,
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
    which the loss and the metrics ignore. With a ``char_encoder`` each word is also read character by
    character (bidirectional by default) and the encoder's final states, forward and backward, join the
    word's embedding: a word never seen in training (``<unk>``) is still told by its suffix, prefix and
    capitals. The batch then holds ``char_ids`` ``Long[B, T, W]`` (or flattened ``[B, T * W]``), as
    ``TokenTaggingData(chars=True)`` gives them. Logs ``train_loss`` per step; ``val_loss``, ``val_acc``
    (token accuracy), ``val_f1`` (macro over tags) and ``test_*`` per epoch. ``predict_step`` returns
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
        char_encoder: the character-level word encoder's ``EncoderConfig`` fields as a dict, e.g.
            ``{cell: gru, hidden_size: 50}``; ``bidirectional`` defaults to true here (a plain dict, so
            that the CLI does not fill in the dataclass's false); ``None``: words only.
        char_vocab: the characters in id order (link from the data module; saved with the model, so a
            checkpoint reads new words' characters itself).
        char_embedding_dim: size of each character's embedding.
        max_word_chars: characters kept per word (link from the data module).
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
        char_encoder: Mapping[str, Any] | None = None,
        char_vocab: Sequence[str] | None = None,
        char_embedding_dim: int = 32,
        max_word_chars: int = DEFAULT_MAX_WORD_CHARS,
    ) -> None:
        super().__init__()
        check_at_least("vocab_size", vocab_size, 1)
        check_at_least("num_tags", num_tags, 2, " (link it from the data module's num_tags)")
        check_pad_id(pad_id, vocab_size)
        tag_names = plain_names(tag_names, num_tags, "tag_names")
        self.char_vocab: list[str] | None = None
        self.char_encoder: nn.Module | None = None
        char_size = 0
        if char_encoder is not None:
            if char_vocab is None:
                raise ValueError(
                    "char_encoder needs char_vocab, the characters of the training words: give the data "
                    "module chars: true (the CLI links char_vocab from it)"
                )
            check_at_least("char_embedding_dim", char_embedding_dim, 1)
            check_max_word_chars(max_word_chars)
            char_encoder = {"bidirectional": True, **char_encoder}
            self.char_vocab = [str(c) for c in char_vocab]
            self.char_embedding = nn.Embedding(
                len(self.char_vocab), char_embedding_dim, padding_idx=CHAR_PAD_ID
            )
            self.char_encoder, char_encoder = make_encoder(char_encoder, char_embedding_dim)
            char_size = output_size(self.char_encoder)
        self.encoder, encoder_config = make_encoder(encoder, embedding_dim + char_size)
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
        self.example_input_array: Any = torch.zeros(2, 8, dtype=torch.long)
        if self.char_encoder is not None:
            chars = torch.full((2, 8, max_word_chars), CHAR_UNK_ID, dtype=torch.long)
            self.example_input_array = (self.example_input_array, torch.full((2,), 8), chars)
        metrics: dict[str, Metric] = {}
        for stage in ("val", "test"):
            metrics[f"{stage}_acc"] = MulticlassAccuracy(num_tags, average="micro", ignore_index=IGNORE_INDEX)
            metrics[f"{stage}_f1"] = MulticlassF1Score(num_tags, average="macro", ignore_index=IGNORE_INDEX)
        self.metrics = nn.ModuleDict(metrics)

    def encoder_inputs(self, input_ids: Tensor, char_ids: Tensor | None = None) -> Tensor:
        """What the encoder reads: the embeddings ``[B, T, embedding_dim]`` (then the words' characters)."""
        check_token_ids(input_ids, self.vocab_size)
        words = self.embedding(input_ids)
        if self.char_encoder is None:
            return words
        if char_ids is None:
            raise ValueError(
                "this tagger reads each word's characters: the batch needs char_ids [B, T, W] "
                "(TokenTaggingData(chars=True) gives them)"
            )
        return torch.cat([words, self.word_features(char_ids.view(*input_ids.shape, -1))], dim=-1)

    def word_features(self, char_ids: Tensor) -> Tensor:
        """The character encoder's final states per word, ``[B, T, W]`` -> ``[B, T, char output]``.

        Only real words are encoded (a padding word, all ``<pad>``, gets zeros), each over its own length.
        """
        assert self.char_encoder is not None
        known = len(self.char_vocab or ())
        if char_ids.numel() and not 0 <= int(char_ids.min()) <= int(char_ids.max()) < known:
            raise ValueError(
                f"char_ids must be in [0, {known}), the ids of this model's char_vocab; got "
                f"[{int(char_ids.min())}, {int(char_ids.max())}]: encode words with its saved char_vocab"
            )
        batch, time, width = char_ids.shape
        flat = char_ids.reshape(batch * time, width)
        lengths = (flat != CHAR_PAD_ID).sum(1)
        real = lengths > 0
        size = output_size(self.char_encoder)
        out = self.char_embedding.weight.new_zeros(batch * time, size)
        if bool(real.any()):
            words, word_lengths = flat[real], lengths[real]
            words = words[:, : int(word_lengths.max())]
            encoded, _ = self.char_encoder(self.char_embedding(words), lengths=word_lengths.cpu())
            out[real] = last_step(encoded, word_lengths, is_bidirectional(self.char_encoder))
        return out.view(batch, time, size)

    def forward(
        self, input_ids: Tensor, lengths: Tensor | None = None, char_ids: Tensor | None = None
    ) -> Tensor:
        """Tag logits ``[B, T, num_tags]`` for ``input_ids`` ``[B, T]`` (and ``char_ids`` ``[B, T, W]``)."""
        out, _ = self.encoder(self.encoder_inputs(input_ids, char_ids), lengths=lengths)
        return self.head(self.dropout(out))

    def char_ids_of(self, sentences: Sequence[Sequence[str]]) -> Tensor | None:
        """``char_ids`` ``[B, T, W]`` for word lists, from the saved character vocabulary (or ``None``)."""
        if self.char_vocab is None:
            return None
        return char_batch(sentences, self.char_vocab, int(self.hparams["max_word_chars"]))

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
        logits = self(input_ids, batch.get("lengths"), batch.get("char_ids"))
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
        char_ids = batch.get("char_ids")
        if char_ids is None and self.char_vocab is not None and "offsets" in batch:
            # a batch of raw texts (zoo.tracking.predict.encode_texts): each token's characters from its span
            spans = zip(batch["texts"], batch["offsets"], strict=True)
            words = [[text[start:end] for start, end in offsets] for text, offsets in spans]
            char_ids = self.char_ids_of(words)
            if char_ids is not None and char_ids.size(1) < input_ids.size(1):  # rows with no token at all
                char_ids = nn.functional.pad(char_ids, (0, 0, 0, input_ids.size(1) - char_ids.size(1)))
        best = self(input_ids, batch.get("lengths"), char_ids).argmax(-1).tolist()
        return {"tags": [row[: int(n)] for row, n in zip(best, lengths.tolist(), strict=True)]}

    def configure_optimizers(self) -> Any:
        return default_optimizer(self, self.hparams["learning_rate"], self.hparams["weight_decay"])
