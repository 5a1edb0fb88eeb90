"""A test-only data module over a streamed CSV (``streaming=True``), batched by ``zoo.data.ShardedStream``.

Rows are ``text,label`` with ``text`` a space-separated list of token ids (1..vocab_size-1; 0 pads), so
no tokenizer is needed and the CLI can link ``vocab_size``, ``num_classes`` and ``pad_id`` as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from zoo.data import ShardedStream


def collate(examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    seqs = [torch.tensor([int(t) for t in str(e["text"]).split()]) for e in examples]
    return {
        "input_ids": pad_sequence(seqs, batch_first=True, padding_value=0),
        "lengths": torch.tensor([len(s) for s in seqs]),
        "labels": torch.tensor([int(e["label"]) for e in examples]),
    }


class StreamedCSVData(L.LightningDataModule):
    """``train.csv``/``val.csv`` read as streams; every rank gets ``batches_per_epoch`` batches."""

    def __init__(self, train: str, val: str, batch_size: int = 5, batches_per_epoch: int = 10) -> None:
        super().__init__()
        self.files = {"train": train, "validation": val}
        self.batch_size, self.batches_per_epoch = batch_size, batches_per_epoch
        self.vocab_size, self.num_classes, self.pad_id = 64, 2, 0

    def _stream(self, split: str, shuffle: bool, batches: int) -> DataLoader:
        ds = datasets.load_dataset("csv", data_files={split: self.files[split]}, split=split, streaming=True)
        sharded = ShardedStream(
            ds, self.batch_size, collate, batches_per_epoch=batches, shuffle_buffer=40 if shuffle else 0
        )
        return DataLoader(sharded, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._stream("train", True, self.batches_per_epoch)

    def val_dataloader(self) -> DataLoader:
        return self._stream("validation", False, 2)
