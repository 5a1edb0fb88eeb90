"""Small tasks and data modules with the zoo's task/data API, for the tracking tests.

They mirror the interfaces of ``zoo.tasks`` and ``zoo.data`` (hyperparameter names, batch keys,
``predict_step`` outputs, ``generate``) at toy sizes, so tracking is tested without them.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from zoo.encoder import build_encoder

SWEET = ["sugar", "honey", "cake", "vanilla", "caramel", "jam", "cream", "cocoa"]
SAVORY = ["salt", "garlic", "onion", "pepper", "cheese", "bacon", "thyme", "soy"]
FILLER = ["the", "chef", "added", "some", "and", "then", "stirred", "it"]
LABELS = ["savory", "sweet"]


def make_sentences(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randrange(2)
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(SWEET if label else SAVORY))
        out.append((" ".join(words), label))
    return out


def word_tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]"]))
    return tok


class ToyTextData(L.LightningDataModule):
    """Sweet-or-savory sentences: the TextClassificationData attributes and batch format."""

    def __init__(self, num_train: int = 128, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.train_items = make_sentences(num_train, seed)
        self.val_items = make_sentences(32, seed + 1)
        self.batch_size = batch_size
        self.tokenizer = word_tokenizer([t for t, _ in self.train_items] + SWEET + SAVORY)
        self.tokenizer_path = str(Path(tempfile.mkdtemp()) / "tokenizer.json")
        self.tokenizer.save(self.tokenizer_path)
        self.pad_id = 0
        self.bos_id = 2
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.num_classes = 2
        self.label_names = list(LABELS)

    def _collate(self, items: list[tuple[str, int]]) -> dict[str, Tensor]:
        rows = [self.tokenizer.encode(t).ids for t, _ in items]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return {"input_ids": ids, "lengths": lengths, "labels": torch.tensor([y for _, y in items])}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_items, batch_size=self.batch_size, shuffle=True, collate_fn=self._collate
        )  # type: ignore[arg-type]

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_items, batch_size=self.batch_size, collate_fn=self._collate)  # type: ignore[arg-type]


def _last_step(out: Tensor, lengths: Tensor) -> Tensor:
    return out[torch.arange(out.shape[0]), (lengths - 1).clamp(min=0)]


class ToyClassifier(L.LightningModule):
    """SequenceClassifier's API: ``predict_step`` gives ``{"probabilities", "labels"}``."""

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        vocab_size: int = 32,
        num_classes: int = 2,
        label_names: list[str] | None = None,
        pad_id: int = 0,
        embedding_dim: int = 16,
        learning_rate: float = 0.02,
    ) -> None:
        super().__init__()
        encoder = encoder or {"cell": "gru", "hidden_size": 16}
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.encoder = build_encoder(encoder, embedding_dim)
        self.head = nn.Linear(self.encoder.output_size, num_classes)

    def encoder_inputs(self, input_ids: Tensor) -> Tensor:
        return self.embedding(input_ids)

    def forward(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.encoder(self.embedding(input_ids), lengths=lengths)
        return self.head(_last_step(out, lengths))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = F.cross_entropy(self(batch["input_ids"], batch["lengths"]), batch["labels"])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["lengths"])
        self.log("val_loss", F.cross_entropy(logits, batch["labels"]))
        self.log("val_acc", (logits.argmax(-1) == batch["labels"]).float().mean())

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> dict[str, Tensor]:
        probs = self(batch["input_ids"], batch["lengths"]).softmax(-1)
        return {"probabilities": probs, "labels": probs.argmax(-1)}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


class ToyTagger(L.LightningModule):
    """TokenTagger's API: ``predict_step`` gives tag logits ``[B, T, num_tags]``."""

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        vocab_size: int = 32,
        num_tags: int = 3,
        tag_names: list[str] | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        encoder = encoder or {"cell": "gru", "hidden_size": 8, "bidirectional": True}
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, 8)
        self.encoder = build_encoder(encoder, 8)
        self.head = nn.Linear(self.encoder.output_size, num_tags)

    def forward(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.encoder(self.embedding(input_ids), lengths=lengths)
        return self.head(out)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        # tag 1 for the label word, 0 otherwise: any signal will do for the tracking tests
        logits = self(batch["input_ids"], batch["lengths"])
        target = (batch["input_ids"] > 10).long()
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        self.log("train_loss", loss)
        return loss

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> Tensor:
        return self(batch["input_ids"], batch["lengths"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


class ToyLanguageModel(L.LightningModule):
    """LanguageModel's API: ``generate(prompt_ids, max_new_tokens, temperature, top_k, seed)``."""

    def __init__(self, encoder: dict[str, Any] | None = None, vocab_size: int = 32) -> None:
        super().__init__()
        encoder = encoder or {"cell": "gru", "hidden_size": 16}
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, 16)
        self.encoder = build_encoder(encoder, 16)
        self.decoder = nn.Linear(16, vocab_size)
        self.steps = 0

    def generate(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> list[int]:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out, state = self.encoder(self.embedding(torch.tensor([prompt_ids])))
        h = out[:, -1]
        new: list[int] = []
        for _ in range(max_new_tokens):
            logits = self.decoder(h)[0] / temperature
            if top_k is not None:
                logits[logits < logits.topk(top_k).values[-1]] = -float("inf")
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
            new.append(token)
            h, state = self.encoder.step(self.embedding(torch.tensor([token])), state)
            self.steps += 1
        return new

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters())


class ToyForecaster(L.LightningModule):
    """Forecaster's API: ``predict_step`` gives ``{"forecast": [B, horizon, targets]}`` in original units."""

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        num_features: int = 2,
        num_targets: int = 1,
        horizon: int = 3,
        target_mean: list[float] | None = None,
        target_std: list[float] | None = None,
    ) -> None:
        super().__init__()
        encoder = encoder or {"cell": "gru", "hidden_size": 8}
        self.save_hyperparameters()
        self.encoder = build_encoder(encoder, num_features)
        self.head = nn.Linear(self.encoder.output_size, horizon * num_targets)
        self.register_buffer("mean", torch.tensor(target_mean or [0.0] * num_targets))
        self.register_buffer("std", torch.tensor(target_std or [1.0] * num_targets))

    def forward(self, inputs: Tensor) -> Tensor:
        out, _ = self.encoder(inputs)
        return self.head(out[:, -1]).view(-1, self.hparams.horizon, self.hparams.num_targets)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> dict[str, Tensor]:
        return {"forecast": self(batch["inputs"]) * self.std + self.mean}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters())


def fit_toy(
    root: Path,
    tracking_uri: str | None = None,
    registered_model_name: str | None = None,
    alias: str | None = "champion",
    seed: int = 0,
    task: str = "classifier",
    experiment: str = "toy",
    epochs: int = 2,
    force_alias: bool = False,
) -> tuple[L.Trainer, L.LightningModule, Any, ToyTextData]:
    """A real Lightning fit of a toy task, tracked by the zoo's logger and LogModelCallback."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.tracking import LogModelCallback, ZooMLFlowLogger

    L.seed_everything(seed)
    data = ToyTextData(seed=seed)
    model: L.LightningModule
    if task == "classifier":
        model = ToyClassifier(vocab_size=data.vocab_size, label_names=data.label_names)
    else:
        model = ToyTagger(vocab_size=data.vocab_size, tag_names=["O", "FOOD", "X"])
    callback = LogModelCallback(
        log_model=True, registered_model_name=registered_model_name, alias=alias, force_alias=force_alias
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=ZooMLFlowLogger(experiment_name=experiment, tracking_uri=tracking_uri),
        callbacks=[ModelCheckpoint(dirpath=root / f"ckpt-{seed}-{task}"), callback],
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=4,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return trainer, model, callback, data
