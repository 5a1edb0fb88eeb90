"""``ShardedStream``: a streamed dataset split across simulated DDP ranks with equal batch counts."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from torch.utils.data import DataLoader

from zoo.data.streaming import ShardedStream, declared_size

N = 103  # odd: no even split between 2 ranks


def ids(examples: list[dict[str, int]]) -> list[int]:
    return [e["id"] for e in examples]


def stream(num_shards: int) -> datasets.IterableDataset:
    return datasets.Dataset.from_dict({"id": list(range(N))}).to_iterable_dataset(num_shards=num_shards)


@pytest.mark.parametrize("num_shards", [4, 3])  # 4: whole shards per rank; 3: every other example
def test_ranks_get_disjoint_equal_shares_reshuffled_per_epoch(num_shards: int) -> None:
    ranks = [
        ShardedStream(stream(num_shards), 5, ids, batches_per_epoch=10, shuffle_buffer=40, seed=1,
                      num_replicas=2, rank=r)
        for r in range(2)
    ]  # fmt: skip
    epochs = []
    for _ in range(2):
        batches = [list(DataLoader(r, batch_size=None)) for r in ranks]  # each pass is an epoch
        assert [len(b) for b in batches] == [10, 10]  # equal counts: no rank waits at an all-reduce
        seen = [[i for batch in b for i in batch] for b in batches]
        assert not set(seen[0]) & set(seen[1])
        assert len(set(seen[0])) == len(seen[0]) == 50
        epochs.append(batches)
    assert epochs[0][0] != epochs[1][0], "the second epoch repeated the first one's order"
    ranks[0].set_epoch(1)  # an epoch replays exactly
    assert list(ranks[0]) == epochs[1][0]


def test_a_rank_whose_share_runs_out_fails_with_the_count() -> None:
    # 103 rows over 2 ranks: 52 and 51, i.e. 10 full batches of 5 each; 11 cannot be met
    s = ShardedStream(stream(3), 5, ids, batches_per_epoch=11, num_replicas=2, rank=1)
    with pytest.raises(ValueError, match=r"rank 1 of 2: the stream ran out after 10 full batches"):
        list(s)


def test_batches_per_epoch_from_the_declared_size(tmp_path: Path) -> None:
    csv = tmp_path / "rows.csv"
    csv.write_text("id\n" + "".join(f"{i}\n" for i in range(N)))
    ds = datasets.load_dataset("csv", data_files={"train": str(csv)}, split="train", streaming=True)
    with pytest.raises(ValueError, match="pass batches_per_epoch"):
        len(ShardedStream(ds, 5, ids, num_replicas=2, rank=0))
    ds.info.splits = datasets.SplitDict({"train": datasets.SplitInfo("train", num_examples=N)})
    assert declared_size(ds) == N
    shares = [ShardedStream(ds, 5, ids, shuffle_buffer=0, num_replicas=2, rank=r) for r in range(2)]
    assert [len(s) for s in shares] == [10, 10]  # 103 // (2 * 5)
    seen = [i for s in shares for batch in s for i in batch]
    assert len(seen) == len(set(seen)) == 100


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="streaming=True"):
        ShardedStream(datasets.Dataset.from_dict({"id": [1]}), 1, ids)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        ShardedStream(stream(1), 0, ids)
    with pytest.raises(RuntimeError, match="num_workers=0"):
        list(
            DataLoader(ShardedStream(stream(2), 5, ids, batches_per_epoch=1), batch_size=None, num_workers=1)
        )
