"""Streamed (``datasets.IterableDataset``) input under DDP: split per rank, reshuffled, equal batches.

A streamed dataset has no length and no indices, so Lightning cannot put a ``DistributedSampler`` in
front of it. :class:`ShardedStream` does the three things that sampler would do:

- it splits the stream per rank with ``datasets.distributed.split_dataset_by_node`` (whole shards per
  rank when the number of shards divides by the world size, else every ``world_size``-th example);
- it reshuffles on every pass (``IterableDataset.shuffle`` with a buffer, re-seeded per epoch), since
  Lightning does not call ``set_epoch`` on an iterable dataset; ``set_epoch`` pins an epoch;
- it yields the **same number of batches on every rank**: a split by shards or rows can leave one rank
  with more examples than another, and a rank with one batch more would wait forever at the next
  gradient all-reduce. The count is ``batches_per_epoch`` when given, else derived from the number of
  examples the dataset declares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import datasets
from datasets.distributed import split_dataset_by_node
from torch.utils.data import IterableDataset, get_worker_info

from zoo.data.batching import _world


def declared_size(dataset: datasets.IterableDataset) -> int | None:
    """Number of examples the dataset's metadata declares for its split, or ``None`` when unknown."""
    info, split = dataset.info, dataset.split
    if info is None or info.splits is None or split is None:
        return None
    try:
        n = info.splits[str(split)].num_examples
    except KeyError:
        return None
    return int(n) if n else None


class ShardedStream(IterableDataset):
    """Batches from a streamed dataset, split across DDP ranks with equal batch counts.

    Use it as ``DataLoader(ShardedStream(...), batch_size=None, num_workers=0)``: it batches itself.

    Args:
        dataset: a ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``), already encoded
            (``dataset.map(...)`` works lazily on a stream).
        batch_size: examples per batch, per rank.
        collate_fn: turns a list of examples into a batch (e.g. ``PadCollate``).
        batches_per_epoch: batches every rank yields per epoch; default: the declared number of examples
            divided by ``world_size * batch_size`` (the remainder is dropped, as with ``drop_last``).
        shuffle_buffer: examples in the shuffle buffer; 0 keeps the stream's order.
        seed: seed of the shuffle (combined with the epoch).
        num_replicas: ranks (default: the ``torch.distributed`` world size at iteration time, or 1).
        rank: this rank (default: the ``torch.distributed`` rank at iteration time, or 0).

    Raises:
        ValueError: on a bad size, when the number of batches cannot be known, or when a rank's share of
            the stream runs out before ``batches_per_epoch`` batches (the message says how many it made).
    """

    def __init__(
        self,
        dataset: datasets.IterableDataset,
        batch_size: int,
        collate_fn: Callable[[Sequence[Mapping[str, Any]]], Any],
        batches_per_epoch: int | None = None,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if not isinstance(dataset, datasets.IterableDataset):
            raise TypeError(
                f"ShardedStream takes a datasets.IterableDataset (load_dataset(..., streaming=True)), "
                f"got {type(dataset).__name__}; a map-style Dataset goes through BucketBatchSampler instead"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate_fn = collate_fn
        self._batches_per_epoch = batches_per_epoch
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = 0
        self._num_replicas = num_replicas
        self._rank = rank

    def set_epoch(self, epoch: int) -> None:
        """Pin the epoch of the next pass (each pass otherwise advances it by one)."""
        self.epoch = epoch

    def batches_per_epoch(self) -> int:
        """Batches every rank yields per epoch."""
        if self._batches_per_epoch is not None:
            return self._batches_per_epoch
        world, _ = _world(self._num_replicas, self._rank)
        n = declared_size(self.dataset)
        if n is None:
            raise ValueError(
                "the stream declares no number of examples, so the batches per rank cannot be equalised: "
                "pass batches_per_epoch (and keep it at or below what every rank's share holds)"
            )
        per_rank = n // (world * self.batch_size)
        if per_rank < 1:
            raise ValueError(f"{n} examples make no full batch of {self.batch_size} on each of {world} ranks")
        return per_rank

    def __len__(self) -> int:
        return self.batches_per_epoch()

    def shard(self, epoch: int) -> datasets.IterableDataset:
        """This rank's part of the stream for ``epoch`` (shuffled first, so every rank shuffles alike)."""
        world, rank = _world(self._num_replicas, self._rank)
        ds = self.dataset
        if self.shuffle_buffer > 0:
            ds = ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        if world > 1:
            ds = split_dataset_by_node(ds, rank=rank, world_size=world)
        ds.set_epoch(epoch)  # on the final object: the derived datasets above start again at epoch 0
        return ds

    def __iter__(self) -> Iterator[Any]:
        if get_worker_info() is not None:
            raise RuntimeError("use ShardedStream with num_workers=0: it batches (and splits) by itself")
        epoch, wanted = self.epoch, self.batches_per_epoch()
        self.epoch = epoch + 1  # Lightning calls no set_epoch on an iterable dataset
        made, batch = 0, []
        for example in self.shard(epoch):
            batch.append(example)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                made, batch = made + 1, []
                if made == wanted:
                    return
        world, rank = _world(self._num_replicas, self._rank)
        raise ValueError(
            f"rank {rank} of {world}: the stream ran out after {made} full batches of {self.batch_size}, "
            f"fewer than batches_per_epoch={wanted}; lower batches_per_epoch so every rank can fill it"
        )
