"""Synthetic memory tasks: the cuisine story, the copy task, the adding problem."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from zoo.data.synthetic import (
    _CLOSINGS,
    CUISINES,
    AddingProblemData,
    CopyTaskData,
    CuisineMemoryData,
    make_cuisine_split,
)


def test_cuisine_task_format_labels_and_distance(tmp_path: Path) -> None:
    start = time.perf_counter()
    make_cuisine_split(3000, 7, None, 0, list(CUISINES))
    assert time.perf_counter() - start < 1.0, "generating a few thousand examples takes well under a second"
    dm = CuisineMemoryData(distance=7, train_size=3000, val_size=300, test_size=300, cache_dir=str(tmp_path))
    batch = next(iter(dm.train_dataloader()))
    assert dm.label_names == list(CUISINES) and dm.num_classes == 8 and dm.pad_id == 0
    assert set(batch) == {"input_ids", "lengths", "labels"}
    dish_to_cuisine = {d: c for c, dishes in CUISINES.items() for d in dishes}
    for row in dm.raw_splits["validation"].select(range(50)):
        words = row["text"].split()
        dishes = [w for w in words if w in dish_to_cuisine]
        assert len(dishes) == 1, "exactly one dish names the cuisine"
        assert dm.label_names[row["label"]] == dish_to_cuisine[dishes[0]]
        closing = next(c for c in _CLOSINGS if row["text"].endswith(c))
        assert len(words) - words.index(dishes[0]) - 1 - len(closing.split()) == 7, "distance filler words"
    counts = torch.bincount(torch.tensor(dm.raw_splits["train"]["label"]), minlength=8)
    assert int(counts.max() - counts.min()) <= 1, "balanced classes"
    # raw text prediction: the saved tokenizer encodes new sentences
    ids = dm.tokenizer.encode("we ordered sushi and then we talked so the cuisine was").ids
    assert dm.tokenizer.token_to_id("<unk>") not in ids


def test_cuisine_distance_sets_the_gap_and_seed_reproduces(tmp_path: Path) -> None:
    near = CuisineMemoryData(distance=0, train_size=50, val_size=10, test_size=10, cache_dir=str(tmp_path))
    far = CuisineMemoryData(distance=40, train_size=50, val_size=10, test_size=10, cache_dir=str(tmp_path))
    assert all(len(t.split()) <= 9 for t in near.raw_splits["train"]["text"])
    assert all(len(t.split()) >= 44 for t in far.raw_splits["train"]["text"])
    again = CuisineMemoryData(distance=40, train_size=50, val_size=10, test_size=10, cache_dir=str(tmp_path))
    assert again.raw_splits["train"]["text"] == far.raw_splits["train"]["text"]
    varied = CuisineMemoryData(distance=2, max_distance=30, train_size=200, val_size=10, test_size=10,
                               cache_dir=str(tmp_path))  # fmt: skip
    assert len({len(t.split()) for t in varied.raw_splits["train"]["text"]}) > 10


def test_cuisine_eval_distance_fixes_validation_and_test_only(tmp_path: Path) -> None:
    dm = CuisineMemoryData(distance=1, max_distance=20, eval_distance=33, train_size=200, val_size=20,
                           test_size=20, cache_dir=str(tmp_path))  # fmt: skip
    dish_to_cuisine = {d for dishes in CUISINES.values() for d in dishes}

    def gap(text: str) -> int:
        words = text.split()
        dish = next(i for i, w in enumerate(words) if w in dish_to_cuisine)
        closing = next(c for c in _CLOSINGS if text.endswith(c))
        return len(words) - dish - 1 - len(closing.split())

    assert {gap(t) for split in ("validation", "test") for t in dm.raw_splits[split]["text"]} == {33}
    train_gaps = {gap(t) for t in dm.raw_splits["train"]["text"]}
    assert max(train_gaps) <= 20 and len(train_gaps) > 10


def test_copy_task_targets_repeat_the_symbols() -> None:
    dm = CopyTaskData(copy_length=5, delay=12, num_symbols=4, train_size=64)
    assert dm.vocab_size == 7 and dm.num_tags == 5 and dm.pad_id == 0
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["input_ids"], batch["tags"]
    assert x.shape == y.shape == (32, 22) and batch["lengths"].eq(22).all()
    assert torch.equal(y[:, -5:], x[:, :5] - 2), "tags at the end are the symbols from the start"
    assert (y[:, :-5] == 0).all() and (x[:, 16] == 2).all() and (x[:, 5:16] == 1).all()
    recall_only = CopyTaskData(copy_length=5, delay=12, num_symbols=4, train_size=64, score_blanks=False)
    recall_batch = next(iter(recall_only.train_dataloader()))
    y_recall = recall_batch["tags"]
    assert (y_recall[:, :-5] == -100).all(), "the blank steps carry no target: only the recall is scored"
    assert torch.equal(y_recall[:, -5:], recall_batch["input_ids"][:, :5] - 2)


def test_adding_problem_targets_are_the_marked_sums() -> None:
    dm = AddingProblemData(sequence_length=30, train_size=100)
    assert (dm.num_features, dm.num_targets, dm.horizon, dm.input_length) == (2, 1, 1, 30)
    assert dm.target_mean == [0.0] and dm.target_std == [1.0]
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["inputs"], batch["targets"]
    assert x.shape == (32, 30, 2) and y.shape == (32, 1, 1)
    markers = x[..., 1]
    assert markers.sum(1).eq(2).all() and markers[:, :15].sum(1).eq(1).all()
    assert torch.allclose((x[..., 0] * markers).sum(1), y[:, 0, 0])


def test_lightning_fit_runs_the_hooks_and_reshuffles_each_epoch(tmp_path: Path) -> None:
    import lightning as L
    from torch import nn

    dm = CuisineMemoryData(
        distance=2,
        max_distance=6,
        train_size=64,
        val_size=16,
        test_size=16,
        batch_size=8,
        cache_dir=str(tmp_path),
    )

    first_batches: list[torch.Tensor] = []

    class Probe(L.LightningModule):
        def __init__(self, vocab_size: int, num_classes: int) -> None:
            super().__init__()
            self.embed = nn.EmbeddingBag(vocab_size, 8)
            self.head = nn.Linear(8, num_classes)

        def training_step(self, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
            if index == 0:
                first_batches.append(batch["input_ids"].clone())
            logits = self.head(self.embed(batch["input_ids"]))
            return nn.functional.cross_entropy(logits, batch["labels"])

        def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
            assert batch["input_ids"].shape[0] == batch["lengths"].shape[0]

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(Probe(dm.vocab_size, dm.num_classes), datamodule=dm)
    assert len(first_batches) == 2
    assert not torch.equal(first_batches[0], first_batches[1]), "a new order each epoch"
