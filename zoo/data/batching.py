"""Batching: pad-to-longest collation, a DDP-aware length-bucketing batch sampler, and LM stream batches.

Language-model batches follow Zaremba et al. (2014), "Recurrent Neural Network Regularization"
(arXiv:1409.2329): the token stream is cut into ``batch_size`` contiguous rows and read in windows of
``seq_len`` steps, in order, so that a model carries its state from one batch to the next (truncated BPTT).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, Sampler
from torch.utils.data.distributed import DistributedSampler

IGNORE_INDEX = -100


class PackedSequences(Dataset):
    """Variable-length sequences kept as one flat tensor plus offsets, with per-example scalars.

    Indexing returns tensor views (no copies, no Arrow-to-Python conversion), so a batch costs a few
    microseconds per example; :class:`PadCollate` pads them with ``pad_sequence``.

    Args:
        sequences: column -> list of id lists, or ``(values, offsets)`` with ``offsets`` of length ``n + 1``.
        scalars: column -> one number per example.
    """

    def __init__(
        self,
        sequences: Mapping[str, tuple[Tensor, Tensor]],
        scalars: Mapping[str, Tensor] | None = None,
    ) -> None:
        if not sequences:
            raise ValueError("PackedSequences needs at least one sequence column")
        self.sequences = {k: (v.long(), o.long()) for k, (v, o) in sequences.items()}
        self.scalars = {k: t.long() for k, t in (scalars or {}).items()}
        sizes = {o.numel() - 1 for _, o in self.sequences.values()} | {
            t.numel() for t in self.scalars.values()
        }
        if len(sizes) != 1:
            raise ValueError(f"columns disagree on the number of examples: {sorted(sizes)}")
        self.size = sizes.pop()
        self._offsets = [o.tolist() for _, o in self.sequences.values()]

    @classmethod
    def from_arrow(
        cls, ds: Any, sequence_columns: Sequence[str], scalar_columns: Sequence[str] = ()
    ) -> PackedSequences:
        """Build from a ``datasets.Dataset`` with list columns ``sequence_columns`` (read once, in bulk)."""
        table = ds.with_format("arrow")[:]
        seqs = {}
        for col in sequence_columns:
            arr = table.column(col).combine_chunks()
            offsets = torch.from_numpy(arr.offsets.to_numpy().astype("int64"))
            values = torch.from_numpy(arr.values.to_numpy(zero_copy_only=False).astype("int64"))
            seqs[col] = (values[int(offsets[0]) :], offsets - offsets[0])
        scalars = {c: torch.from_numpy(table.column(c).to_numpy().astype("int64")) for c in scalar_columns}
        return cls(seqs, scalars)

    def __len__(self) -> int:
        return self.size

    def lengths(self) -> list[int]:
        """Length of every example's first sequence column."""
        o = self._offsets[0]
        return [o[i + 1] - o[i] for i in range(self.size)]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = {}
        for (key, (values, _)), o in zip(self.sequences.items(), self._offsets, strict=True):
            item[key] = values[o[i] : o[i + 1]]
        for key, t in self.scalars.items():
            item[key] = t[i]
        return item

    def __getitems__(self, indices: Sequence[int]) -> PackedBatch:
        return PackedBatch(self, list(indices))

    def pad(
        self, indices: Sequence[int], pad_values: Mapping[str, int], scalar_keys: Sequence[str]
    ) -> dict[str, Tensor]:
        """The padded batch of ``indices`` in a few vectorised ops (see :class:`PadCollate`)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch: dict[str, Tensor] = {}
        lengths: Tensor | None = None
        for key, pad in pad_values.items():
            values, offsets = self.sequences[key]
            starts = offsets[idx]
            lens = offsets[idx + 1] - starts
            longest = int(lens.max()) if len(indices) else 0
            steps = torch.arange(longest)
            if values.numel() == 0:
                out = torch.full((len(indices), longest), pad, dtype=torch.long)
            else:
                positions = (starts[:, None] + steps[None, :]).clamp_(max=values.numel() - 1)  # [B, T]
                out = values[positions].masked_fill_(steps[None, :] >= lens[:, None], pad)
            batch[key] = out
            lengths = lens if lengths is None else lengths
        assert lengths is not None
        batch["lengths"] = lengths
        for key in scalar_keys:
            batch[key] = self.scalars[key][idx]
        return batch


class PackedBatch(Sequence):
    """The examples of one batch of :class:`PackedSequences`: a sequence of example dicts that
    :class:`PadCollate` pads in one go instead of example by example."""

    def __init__(self, source: PackedSequences, indices: list[int]) -> None:
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return PackedBatch(self.source, self.indices[i])
        return self.source[self.indices[i]]


class PadCollate:
    """Collate a list of examples into padded tensors, padding to the batch's longest sequence.

    Args:
        pad_values: sequence key -> pad value (e.g. ``{"input_ids": 0, "tags": -100}``); the first key's
            lengths become ``lengths`` ``Long[B]``.
        scalar_keys: keys holding one number per example (e.g. ``("labels",)``), stacked to ``Long[B]``.
    """

    def __init__(self, pad_values: Mapping[str, int], scalar_keys: Sequence[str] = ()) -> None:
        if not pad_values:
            raise ValueError("PadCollate needs at least one sequence key")
        self.pad_values = dict(pad_values)
        self.scalar_keys = tuple(scalar_keys)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        if isinstance(examples, PackedBatch):
            return examples.source.pad(examples.indices, self.pad_values, self.scalar_keys)
        keys = list(self.pad_values)
        lengths = torch.tensor([len(ex[keys[0]]) for ex in examples], dtype=torch.long)
        batch: dict[str, Tensor] = {}
        for key, pad in self.pad_values.items():
            seqs = [torch.as_tensor(ex[key], dtype=torch.long) for ex in examples]
            batch[key] = pad_sequence(seqs, batch_first=True, padding_value=pad)  # [B, longest]
        batch["lengths"] = lengths
        for key in self.scalar_keys:
            batch[key] = torch.as_tensor([int(ex[key]) for ex in examples], dtype=torch.long)
        return batch


def _is_full_permutation(sampler: Any) -> bool:
    """Whether ``sampler`` yields each index of its data once, in an order that only seeds it."""
    return (
        isinstance(sampler, RandomSampler)
        and not sampler.replacement
        and sampler.num_samples == len(sampler.data_source)  # type: ignore[arg-type]
    )


class EpochSampler(RandomSampler):
    """A ``RandomSampler`` whose order :class:`BucketBatchSampler` draws itself, from its seed and the epoch.

    It stands in for a plain ``RandomSampler`` inside a :class:`BucketBatchSampler` so that Lightning, which
    calls ``set_epoch`` on a batch sampler's inner sampler at every epoch start (also when it resumes from
    a checkpoint), tells the batch sampler the epoch. Iterated alone it yields the indices in order.
    """

    def __init__(self, data_source: Sized) -> None:
        super().__init__(data_source)  # type: ignore[arg-type]
        self.epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch; :meth:`BucketBatchSampler.current_epoch` reads it."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None:
        num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=}, {rank=}")
    return num_replicas, rank


class BucketBatchSampler(BatchSampler):
    """Batches of similar length: shuffle, sort within large pools, cut into batches, shuffle the batches.

    A ``torch.utils.data.BatchSampler`` that takes a ``sampler``, so Lightning can swap in a
    ``DistributedSampler`` (then each rank buckets its own shard). Without one, it shards itself when
    ``num_replicas > 1`` (given, or read from ``torch.distributed``): every rank sees the same seeded
    permutation, takes a disjoint slice of it (padded by repeating the first indices, or dropped with
    ``drop_last``, so slices are equal) and so yields the same number of batches. Call ``set_epoch`` to
    reshuffle, or let it follow the inner sampler's epoch or count its own passes.

    Args:
        sampler: yields dataset indices (``SequentialSampler``, ``RandomSampler`` or ``DistributedSampler``).
        batch_size: examples per batch.
        drop_last: drop the last incomplete batch (and, when sharding, the tail that does not divide).
        lengths: length of every example in the dataset, indexed like the dataset.
        pool_factor: a pool holds ``batch_size * pool_factor`` examples; larger pools pad less but mix less.
        shuffle: shuffle examples and batches (default: whether ``sampler`` is random).
        seed: seed of the shuffles (combined with the epoch).
        num_replicas: processes to shard across (default: the ``torch.distributed`` world size, or 1).
        rank: this process's shard (default: the ``torch.distributed`` rank, or 0).
    """

    def __init__(
        self,
        sampler: Sampler[int] | Sequence[int],
        batch_size: int,
        drop_last: bool = False,
        *,
        lengths: Sequence[int],
        pool_factor: int = 50,
        shuffle: bool | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)  # type: ignore[arg-type]
        if pool_factor < 1:
            raise ValueError(f"pool_factor must be >= 1, got {pool_factor}")
        if shuffle is not False and isinstance(sampler, RandomSampler) and _is_full_permutation(sampler):
            # Lightning calls `set_epoch` on this inner sampler with the trainer's epoch, after a resume too
            sampler = EpochSampler(sampler.data_source)
            self.sampler = sampler
        self.lengths = [int(n) for n in lengths]
        self.pool_factor = pool_factor
        inner_random = isinstance(sampler, RandomSampler) or (
            isinstance(sampler, DistributedSampler) and sampler.shuffle
        )
        self.shuffle = inner_random if shuffle is None else shuffle
        self.seed = seed
        self.epoch = 0
        self._epoch_was_set = False
        self._passes = 0
        # A DistributedSampler already shards; sharding again would drop data.
        if isinstance(sampler, DistributedSampler):
            self.num_replicas, self.rank = 1, 0
        else:
            self.num_replicas, self.rank = _world(num_replicas, rank)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (forwarded to the inner sampler when it has ``set_epoch``)."""
        self.epoch = epoch
        self._epoch_was_set = True
        inner = getattr(self.sampler, "set_epoch", None)
        if callable(inner):
            inner(epoch)

    def _shard_size(self, n: int) -> int:
        if self.num_replicas == 1:
            return n
        return n // self.num_replicas if self.drop_last else math.ceil(n / self.num_replicas)

    def _indices(self, generator: torch.Generator) -> list[int]:
        if self.shuffle and _is_full_permutation(self.sampler):
            # Draw the order from the seeded generator, not from the global RNG a RandomSampler would use:
            # the order is then a function of (seed, epoch) alone, so a resumed run replays it.
            indices = list(range(len(self.sampler)))  # type: ignore[arg-type]
        else:
            indices = list(iter(self.sampler))
            if self.num_replicas == 1:
                return indices
            # Every rank must start from the same order: sort, then apply the shared seeded permutation.
            indices.sort()
        if self.shuffle:
            perm = torch.randperm(len(indices), generator=generator).tolist()
            indices = [indices[i] for i in perm]
        if self.num_replicas == 1:
            return indices
        per_rank = self._shard_size(len(indices))
        total = per_rank * self.num_replicas
        if total > len(indices):
            indices += (indices * math.ceil(total / max(1, len(indices))))[: total - len(indices)]
        return indices[self.rank : total : self.num_replicas]

    def current_epoch(self) -> int:
        """The epoch that seeds the shuffles.

        Lightning calls ``set_epoch`` only on the inner sampler (with the trainer's epoch, also after a
        resume), so without an explicit ``set_epoch`` the inner sampler's epoch is used, else the number of
        passes so far (the same on every rank).
        """
        if self._epoch_was_set:
            return self.epoch
        inner = getattr(self.sampler, "epoch", None)
        return inner if isinstance(inner, int) else self._passes

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.current_epoch()
        self._passes += 1
        generator = torch.Generator().manual_seed(self.seed + 1_000_003 * epoch)
        indices = self._indices(generator)
        pool_size = self.batch_size * self.pool_factor
        batches: list[list[int]] = []
        for start in range(0, len(indices), pool_size):
            pool = indices[start : start + pool_size]
            pool.sort(key=self.lengths.__getitem__)
            batches.extend(pool[k : k + self.batch_size] for k in range(0, len(pool), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            order = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in order]
        yield from batches

    def __len__(self) -> int:
        n = self._shard_size(len(self.sampler))  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def stream_rows(stream: Tensor, rows: int) -> Tensor:
    """Cut a 1-D token stream into ``rows`` contiguous rows ``[rows, len // rows]`` (the tail is dropped)."""
    if stream.dim() != 1:
        raise ValueError(f"expected a 1-D token stream, got shape {tuple(stream.shape)}")
    per_row = stream.numel() // rows
    if per_row < 2:
        raise ValueError(f"a stream of {stream.numel()} tokens is too short for {rows} rows of >= 2 tokens")
    return stream[: per_row * rows].view(rows, per_row)


class StreamBatches(IterableDataset):
    """Truncated-BPTT batches over a token stream: each row continues from one batch to the next.

    The stream is cut into ``batch_size * num_replicas`` rows; rank ``r`` reads rows
    ``r * batch_size : (r + 1) * batch_size``, so every rank gets the same number of windows. Yields
    ``{"input_ids": Long[B, T], "targets": Long[B, T], "reset": Bool[]}`` with ``targets`` the inputs shifted
    by one; ``reset`` is true on the first window of each pass. Use with ``DataLoader(batch_size=None)`` and
    ``num_workers=0`` (the batches are views of one tensor; workers would only copy them).

    Args:
        stream: the token ids of a split, concatenated in order.
        batch_size: rows per batch (per rank).
        seq_len: steps per window (the last window of a pass may be shorter).
        num_replicas: ranks (default: ``torch.distributed`` world size at iteration time, or 1).
        rank: this rank (default: ``torch.distributed`` rank at iteration time, or 0).
    """

    def __init__(
        self,
        stream: Tensor,
        batch_size: int,
        seq_len: int,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size=}, {seq_len=}")
        self.stream = stream.long()
        self.batch_size = batch_size
        self.seq_len = seq_len
        self._num_replicas = num_replicas
        self._rank = rank

    def rows(self) -> Tensor:
        """This rank's rows ``[batch_size, per_row]``."""
        world, rank = _world(self._num_replicas, self._rank)
        data = stream_rows(self.stream, self.batch_size * world)
        return data[rank * self.batch_size : (rank + 1) * self.batch_size]

    def __len__(self) -> int:
        world, _ = _world(self._num_replicas, self._rank)
        per_row = self.stream.numel() // (self.batch_size * world)
        return math.ceil((per_row - 1) / self.seq_len)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        data = self.rows()
        for i, start in enumerate(range(0, data.size(1) - 1, self.seq_len)):
            width = min(self.seq_len, data.size(1) - 1 - start)
            yield {
                "input_ids": data[:, start : start + width],
                "targets": data[:, start + 1 : start + 1 + width],
                "reset": torch.tensor(i == 0),
            }


class FixedWindows(Dataset):
    """Non-overlapping windows of ``seq_len + 1`` tokens over a stream, for the shuffled LM mode.

    Items are ``{"input_ids": Long[T], "targets": Long[T]}``; collate with :class:`WindowCollate`.
    """

    def __init__(self, stream: Tensor, seq_len: int) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        n = (stream.numel() - 1) // seq_len
        if n < 1:
            raise ValueError(f"a stream of {stream.numel()} tokens is too short for windows of {seq_len}")
        self.stream = stream.long()
        self.seq_len = seq_len
        self.num_windows = n

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        start = i * self.seq_len
        return {
            "input_ids": self.stream[start : start + self.seq_len],
            "targets": self.stream[start + 1 : start + 1 + self.seq_len],
        }


class WindowCollate:
    """Stack fixed windows and mark the batch ``reset`` (windows are unrelated, so no state carries over)."""

    def __call__(self, items: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        return {
            "input_ids": torch.stack([it["input_ids"] for it in items]),
            "targets": torch.stack([it["targets"] for it in items]),
            "reset": torch.tensor(True),
        }


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` that Lightning checkpoints mid-epoch and resumes exactly where it stopped.

    It implements Lightning's protocol for stateful loaders (``state_dict``/``load_state_dict``; Lightning
    saves the state in every checkpoint and loads it when it resumes inside an epoch). The state is the
    number of batches delivered in the current pass and the global torch RNG state at the moment the pass
    drew its order (a ``RandomSampler`` seeds itself from it). On resume, the pass's order is drawn again
    from that state and the delivered batches are skipped: by index for a map-style dataset (nothing is
    loaded for them), by reading past them for an iterable one. Neither touches the global RNG, which the
    trainer restores to its state at the checkpoint. A checkpoint at the end of a pass resumes with the
    next pass. Use it as a drop-in ``DataLoader`` for training data whose length is known (Lightning
    fetches one batch ahead from a loader without a length, so its count would be one ahead).
    """

    _delivered = 0
    _replaying = 0
    _pass_rng: Tensor | None = None
    _replay: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Batches delivered in this pass and the RNG state the pass drew its order from."""
        return {"delivered": self._delivered, "pass_rng": self._pass_rng}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Make the next pass continue the checkpointed one (see the class docstring)."""
        self._replay = dict(state)

    @property
    def _index_sampler(self) -> Any:  # read by the DataLoader's iterator when it is created
        return _PassOrder(self, super()._index_sampler)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        replay, self._replay = self._replay, None
        skip = int(replay["delivered"]) if replay else 0
        try:
            complete = skip >= len(self)
        except TypeError:  # an iterable dataset without a length
            complete = False
        if replay is None or skip == 0 or complete:
            self._delivered = 0
            return _Counting(self, super().__iter__(), 0)
        self._delivered = skip
        self._pass_rng = replay["pass_rng"]
        iterable = isinstance(self.dataset, IterableDataset)
        # the uninterrupted run made its iterator before the checkpoint: this one must not draw again
        with torch.random.fork_rng(devices=[]):
            self._replaying = 0 if iterable else skip
            inner = super().__iter__()
        if iterable:
            for _ in range(skip):
                next(inner)
        return _Counting(self, inner, skip)


_END = object()


class _PassOrder:
    """The index sampler of one pass of a :class:`ResumableDataLoader`: records, or replays, its order."""

    def __init__(self, loader: ResumableDataLoader, sampler: Any) -> None:
        self.loader, self.sampler = loader, sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        loader = self.loader
        skip, loader._replaying = loader._replaying, 0
        if skip:
            with torch.random.fork_rng(devices=[]):
                if loader._pass_rng is not None:
                    torch.set_rng_state(loader._pass_rng)
                order = iter(self.sampler)
                first = next(order, _END)
        else:
            loader._pass_rng = torch.get_rng_state()
            order = iter(self.sampler)
            first = next(order, _END)
        if first is _END:
            return
        if skip:
            for _ in range(skip - 1):
                next(order, None)
        else:
            yield first
        yield from order


class _Counting:
    """Iterator over a :class:`ResumableDataLoader` pass that counts the batches it delivers."""

    def __init__(self, loader: ResumableDataLoader, inner: Iterator[Any], delivered: int) -> None:
        self.loader, self.inner = loader, inner
        loader._delivered = delivered

    def __iter__(self) -> _Counting:
        return self

    def __next__(self) -> Any:
        batch = next(self.inner)
        self.loader._delivered += 1
        return batch

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]


def loader_options(num_workers: int, pin_memory: bool | None) -> dict[str, Any]:
    """``DataLoader`` keyword arguments: pin memory when CUDA is there, keep workers alive between epochs."""
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
        "persistent_workers": num_workers > 0,
    }
