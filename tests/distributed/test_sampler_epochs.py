"""Per-epoch reshuffling of the zoo's batch sampler as Lightning drives it (in one process, fast).

Lightning calls ``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler`` at every epoch
start, never on the batch sampler itself. These tests run Lightning's own function for that on the
loaders the zoo builds, for several simulated ranks.
"""

from __future__ import annotations

from collections import Counter

from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from zoo.data import BucketBatchSampler

N, BATCH, WORLD = 37, 4, 2
LENGTHS = [1 + (i * 7) % 11 for i in range(N)]


def _epochs(loaders: list[DataLoader], epochs: int) -> list[list[list[list[int]]]]:
    """epoch -> rank -> batches, with Lightning calling set_epoch the way its fit loop does."""
    out = []
    for epoch in range(epochs):
        for loader in loaders:
            _set_sampler_epoch(loader, epoch)
        out.append([list(loader) for loader in loaders])
    return out


def _loader(sampler: BucketBatchSampler) -> DataLoader:
    return DataLoader(list(range(N)), batch_sampler=sampler, collate_fn=lambda items: items)


def test_self_sharding_sampler_reshuffles_every_epoch_in_step_across_ranks() -> None:
    # use_distributed_sampler=False (or no Lightning): the sampler shards itself
    loaders = [
        _loader(BucketBatchSampler(SequentialSampler(range(N)), BATCH, lengths=LENGTHS, shuffle=True,
                                   num_replicas=WORLD, rank=r))
        for r in range(WORLD)
    ]  # fmt: skip
    epochs = _epochs(loaders, 3)
    shards = [[frozenset(i for b in rank for i in b) for rank in epoch] for epoch in epochs]
    for epoch in epochs:
        assert len(epoch[0]) == len(epoch[1])  # same number of batches on every rank
        seen = Counter(i for rank in epoch for b in rank for i in b)
        assert set(seen) == set(range(N)) and sum(seen.values()) == N + 1  # one repeat evens 37 out
    assert len({s[0] for s in shards}) == 3, "rank 0 got the same shard in different epochs"


def test_sampler_inside_lightnings_distributed_sampler_follows_its_epoch() -> None:
    # what Lightning builds under DDP: a DistributedSampler inside the bucketing batch sampler
    loaders = [
        _loader(BucketBatchSampler(DistributedSampler(range(N), num_replicas=WORLD, rank=r, shuffle=True,
                                                      seed=5), BATCH, lengths=LENGTHS))
        for r in range(WORLD)
    ]  # fmt: skip
    epochs = _epochs(loaders, 3)
    for epoch in epochs:
        assert len(epoch[0]) == len(epoch[1])
        assert {i for rank in epoch for b in rank for i in b} == set(range(N))
    orders = [tuple(map(tuple, epoch[0])) for epoch in epochs]
    assert len(set(orders)) == 3
    # a rerun of an epoch gives the same batches: the shuffle depends on the epoch, not on history
    _set_sampler_epoch(loaders[0], 1)
    assert list(loaders[0]) == epochs[1][0]


def test_single_process_random_sampler_reshuffles_without_set_epoch() -> None:
    loader = _loader(BucketBatchSampler(RandomSampler(range(N)), BATCH, lengths=LENGTHS, seed=0))
    first, second = list(loader), list(loader)
    assert first != second
    assert sorted(i for b in first for i in b) == list(range(N))
