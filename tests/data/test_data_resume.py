"""ResumableDataLoader continues a pass exactly; BucketBatchSampler's order follows the trainer's epoch."""

from __future__ import annotations

import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import RandomSampler, TensorDataset

from zoo.data import BucketBatchSampler, ResumableDataLoader, StreamBatches


def _ids(batches: list) -> list[list[int]]:
    return [b[0].tolist() if isinstance(b, list) else b["input_ids"].flatten().tolist() for b in batches]


def test_a_shuffled_pass_resumes_after_its_delivered_batches_without_drawing_random_numbers() -> None:
    data = TensorDataset(torch.arange(50))
    torch.manual_seed(0)
    loader = ResumableDataLoader(data, batch_size=4, shuffle=True)
    pass_ = iter(loader)
    [next(pass_) for _ in range(5)]
    state, rng_at_checkpoint = loader.state_dict(), torch.get_rng_state()
    rest = _ids(list(pass_))

    torch.manual_seed(123)  # a new process: seeded afresh, then the trainer restores the RNG state
    resumed = ResumableDataLoader(data, batch_size=4, shuffle=True)
    resumed.load_state_dict(state)
    torch.set_rng_state(rng_at_checkpoint)
    assert _ids(list(resumed)) == rest
    assert torch.equal(torch.get_rng_state(), rng_at_checkpoint)
    # the pass after it draws a new order, as it would have without the interruption
    assert len(list(resumed)) == 13


def test_a_checkpoint_at_the_end_of_a_pass_resumes_with_a_whole_new_pass() -> None:
    loader = ResumableDataLoader(TensorDataset(torch.arange(12)), batch_size=4, shuffle=True)
    list(loader)
    resumed = ResumableDataLoader(TensorDataset(torch.arange(12)), batch_size=4, shuffle=True)
    resumed.load_state_dict(loader.state_dict())
    assert sorted(i for batch in _ids(list(resumed)) for i in batch) == list(range(12))


def test_a_stream_resumes_at_its_position() -> None:
    stream = StreamBatches(torch.arange(200), batch_size=2, seq_len=5)
    loader = ResumableDataLoader(stream, batch_size=None)
    pass_ = iter(loader)
    [next(pass_) for _ in range(4)]
    state = loader.state_dict()
    rest = list(pass_)
    resumed = ResumableDataLoader(StreamBatches(torch.arange(200), batch_size=2, seq_len=5), batch_size=None)
    resumed.load_state_dict(state)
    got = list(resumed)
    assert _ids(got) == _ids(rest) and len(got) == len(stream) - 4
    assert not any(bool(b["reset"]) for b in got)


def _bucket_loader(n: int = 40) -> ResumableDataLoader:
    data = TensorDataset(torch.arange(n))
    sampler = BucketBatchSampler(RandomSampler(data), 4, lengths=[i % 7 for i in range(n)], seed=3)
    return ResumableDataLoader(data, batch_sampler=sampler)


def test_bucket_order_follows_the_epoch_lightning_sets_not_the_passes_or_the_global_rng() -> None:
    # Lightning calls set_epoch on the batch sampler's inner sampler at each epoch start, also after a
    # resume; before, the bucket sampler counted its own passes (0 after a restart) and its inner
    # RandomSampler drew from the global RNG
    first = _bucket_loader()
    for epoch in range(3):
        _set_sampler_epoch(first, epoch)
        torch.manual_seed(epoch)
        epoch_2 = _ids(list(first))
    restarted = _bucket_loader()
    _set_sampler_epoch(restarted, 2)
    torch.manual_seed(99)
    assert _ids(list(restarted)) == epoch_2
    _set_sampler_epoch(restarted, 1)
    assert _ids(list(restarted)) != epoch_2
