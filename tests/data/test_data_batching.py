"""Batching: padding, the DDP-aware bucketing sampler, truncated-BPTT streams and fixed windows."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from zoo.data.batching import (
    BucketBatchSampler,
    FixedWindows,
    PackedSequences,
    PadCollate,
    StreamBatches,
    WindowCollate,
)


def test_pad_collate_pads_to_longest_and_reports_lengths() -> None:
    collate = PadCollate({"input_ids": 0, "tags": -100}, scalar_keys=("labels",))
    batch = collate(
        [
            {"input_ids": [5, 6, 7], "tags": [1, 2, 3], "labels": 1},
            {"input_ids": [8], "tags": [4], "labels": 0},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["tags"].tolist() == [[1, 2, 3], [4, -100, -100]]
    assert batch["lengths"].tolist() == [3, 1]
    assert batch["labels"].tolist() == [1, 0]
    assert all(t.dtype == torch.long for t in batch.values())


def _lengths(n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 50, (n,), generator=g).tolist()


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n", [30, 31, 101])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_are_disjoint_cover_the_data_and_have_equal_batch_counts(
    world: int, n: int, drop_last: bool
) -> None:
    lengths = _lengths(n)
    shards, counts = [], []
    for rank in range(world):
        sampler = BucketBatchSampler(
            RandomSampler(range(n)),
            batch_size=4,
            drop_last=drop_last,
            lengths=lengths,
            pool_factor=3,
            seed=7,
            num_replicas=world,
            rank=rank,
        )
        batches = list(sampler)
        assert len(batches) == len(sampler)
        counts.append(len(batches))
        shards.append([i for b in batches for i in b])
    assert len(set(counts)) == 1, f"unequal batch counts per rank: {counts}"
    seen = Counter(i for shard in shards for i in shard)
    if drop_last:
        # disjoint, and at most the non-dividing tail (plus one partial batch per rank) is left out
        assert max(seen.values()) == 1
        assert len(seen) >= n - (n % world) - world * 3
    else:
        assert set(seen) == set(range(n)), "every example is served"
        repeats = sum(c - 1 for c in seen.values())
        assert repeats == math.ceil(n / world) * world - n, "only the padding to equal shards repeats"


def test_buckets_reduce_padding_and_epochs_reshuffle() -> None:
    n, bs = 400, 8
    lengths = _lengths(n, seed=1)
    sampler = BucketBatchSampler(RandomSampler(range(n)), bs, lengths=lengths, pool_factor=50, seed=0)

    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    epoch0 = list(sampler)
    random_batches = [list(range(k, min(k + bs, n))) for k in range(0, n, bs)]
    assert padding(epoch0) < padding(random_batches) / 5
    assert sorted(i for b in epoch0 for i in b) == list(range(n))
    sampler.set_epoch(1)
    assert list(sampler) != epoch0


def test_self_sharding_epochs_stay_in_step_across_ranks() -> None:
    n = 50
    lengths = _lengths(n)
    samplers = [
        BucketBatchSampler(
            SequentialSampler(range(n)), 4, lengths=lengths, shuffle=True, num_replicas=2, rank=r
        )
        for r in range(2)
    ]
    for epoch in range(3):
        for s in samplers:
            s.set_epoch(epoch)
        a, b = ({i for batch in s for i in batch} for s in samplers)
        assert len(a & b) == 0 and len(a | b) == n


def test_epochs_reshuffle_without_set_epoch() -> None:
    lengths = _lengths(40)
    for rank in range(2):
        sampler = BucketBatchSampler(
            SequentialSampler(range(40)), 4, lengths=lengths, shuffle=True, num_replicas=2, rank=rank
        )
        first, second = list(sampler), list(sampler)
        assert first != second and sorted(map(tuple, first)) != sorted(map(tuple, second))


def test_wraps_a_distributed_sampler_without_sharding_twice() -> None:
    n = 21
    lengths = _lengths(n)
    seen = []
    counts = []
    for rank in range(2):
        inner = DistributedSampler(range(n), num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler = BucketBatchSampler(inner, 4, lengths=lengths)
        sampler.set_epoch(2)
        assert inner.epoch == 2  # forwarded, so the inner shuffle changes per epoch too
        batches = list(sampler)
        counts.append(len(batches))
        seen += [i for b in batches for i in b]
    assert counts[0] == counts[1] == len(sampler)
    assert set(seen) == set(range(n))


def test_lightning_can_inject_a_distributed_sampler() -> None:
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader

    n = 20
    data = [{"input_ids": [1] * (1 + i % 5)} for i in range(n)]
    lengths = [len(d["input_ids"]) for d in data]
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = DataLoader(
            data,
            batch_sampler=BucketBatchSampler(RandomSampler(data), 4, lengths=lengths, seed=1),
            collate_fn=PadCollate({"input_ids": 0}),
        )
    assert isinstance(loader.batch_sampler, BatchSampler)
    new = _update_dataloader(loader, DistributedSampler(data, num_replicas=2, rank=1, shuffle=True))
    assert isinstance(new.batch_sampler, BucketBatchSampler)
    assert isinstance(new.batch_sampler.sampler, DistributedSampler)
    assert new.batch_sampler.lengths == lengths
    assert sum(len(b["lengths"]) for b in new) == n // 2


def test_stream_batches_continue_rows_and_shift_targets() -> None:
    stream = torch.arange(103)
    loader = DataLoader(StreamBatches(stream, batch_size=4, seq_len=6), batch_size=None)
    batches = list(loader)
    rows = stream[:100].view(4, 25)
    assert len(batches) == len(loader.dataset) == math.ceil(24 / 6)
    inputs = torch.cat([b["input_ids"] for b in batches], dim=1)
    targets = torch.cat([b["targets"] for b in batches], dim=1)
    assert torch.equal(inputs, rows[:, :-1]) and torch.equal(targets, rows[:, 1:])
    assert [bool(b["reset"]) for b in batches] == [True, False, False, False]
    assert batches[0]["reset"].dim() == 0


@pytest.mark.parametrize("world", [1, 2, 3])
def test_stream_rows_are_sharded_with_equal_window_counts(world: int) -> None:
    stream = torch.arange(1000)
    per_rank = [
        StreamBatches(stream, batch_size=2, seq_len=7, num_replicas=world, rank=r) for r in range(world)
    ]
    counts = [len(list(s)) for s in per_rank]
    assert len(set(counts)) == 1 and counts[0] == len(per_rank[0])
    rows = torch.cat([s.rows() for s in per_rank])
    assert rows.shape[0] == 2 * world
    assert torch.equal(rows.flatten(), stream[: rows.numel()]), "ranks hold disjoint contiguous rows"


def test_fixed_windows_are_shifted_and_reset() -> None:
    stream = torch.arange(50)
    windows = FixedWindows(stream, seq_len=7)
    assert len(windows) == 7
    item = windows[2]
    assert item["input_ids"].tolist() == list(range(14, 21))
    assert item["targets"].tolist() == list(range(15, 22))
    batch = WindowCollate()([windows[0], windows[1]])
    assert batch["input_ids"].shape == (2, 7) and bool(batch["reset"])


def test_packed_sequences_from_a_sliced_arrow_dataset() -> None:
    import datasets

    rows = {"input_ids": [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]], "labels": [0, 1, 0, 1]}
    ds = datasets.Dataset.from_dict(rows).select([3, 1, 2])  # an indices mapping, as after a carve
    packed = PackedSequences.from_arrow(ds, ["input_ids"], ["labels"])
    assert len(packed) == 3 and packed.lengths() == [4, 1, 2]
    assert packed[0]["input_ids"].tolist() == [7, 8, 9, 10] and int(packed[2]["labels"]) == 0
    batch = PadCollate({"input_ids": 0}, scalar_keys=("labels",))(packed.__getitems__([1, 0]))
    assert batch["input_ids"].tolist() == [[4, 0, 0, 0], [7, 8, 9, 10]]
    assert batch["labels"].tolist() == [1, 1] and batch["lengths"].tolist() == [1, 4]


def test_vectorised_padding_equals_example_by_example() -> None:
    g = torch.Generator().manual_seed(0)
    seqs = [
        torch.randint(1, 100, (int(n),), generator=g).tolist()
        for n in torch.randint(0, 12, (40,), generator=g)
    ]
    seqs[5] = []  # an empty example still pads correctly
    offsets = torch.tensor([0] + [len(s) for s in seqs]).cumsum(0)
    values = torch.tensor([t for s in seqs for t in s])
    packed = PackedSequences(
        {"input_ids": (values, offsets), "tags": (values + 1, offsets)}, {"labels": torch.arange(40)}
    )
    collate = PadCollate({"input_ids": 0, "tags": -100}, scalar_keys=("labels",))
    indices = [5, 3, 17, 39, 0, 22]
    fast = collate(packed.__getitems__(indices))
    slow = collate(list(packed.__getitems__(indices)))
    assert fast.keys() == slow.keys()
    for key in fast:
        assert torch.equal(fast[key], slow[key]), key
    assert fast["input_ids"][0].eq(0).all() and fast["lengths"][0] == 0
