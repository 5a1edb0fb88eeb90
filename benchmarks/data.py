"""Data pipeline throughput on SST-2, and the data loader's share of a training step.

Run from the repository root (the corpora live in ../shared/data, or set ZOO_SHARED_DATA):

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/data.py [--steps 200] [--batch-size 64]

1. Tokenising and batching SST-2 train end to end, from the TSV files to padded batches, with a cold
   cache (load, train the word tokenizer, ``Dataset.map``, one pass of the bucketed loader) and a warm one
   (everything cached, as in every run after the first), in tokens per second.
2. A small GRU classifier (embedding 64, GRU 128, last-state pooling) trained for ``--steps`` steps: the
   time spent in ``next(iter(loader))`` against the whole step. The bar is under 5%.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets
import torch
from torch import nn

from zoo.data.text import TextClassificationData
from zoo.encoder import RecurrentEncoder


def shared_data_dir() -> Path:
    candidates = [
        os.environ.get("ZOO_SHARED_DATA"),
        Path.cwd().parent / "shared" / "data",
        "/work/shared/data",
    ]
    for c in candidates:
        if c and (Path(c) / "sst2").is_dir():
            return Path(c)
    raise SystemExit("SST-2 not found: set ZOO_SHARED_DATA to the folder holding sst2/")


def build(cache: str, batch_size: int, num_workers: int = 0) -> TextClassificationData:
    d = shared_data_dir() / "sst2"
    files = {"train": str(d / "train.tsv"), "validation": str(d / "dev.tsv"), "test": str(d / "test.tsv")}
    dm = TextClassificationData(
        "csv",
        files,
        text_column="sentence",
        load_kwargs={"delimiter": "\t", "quoting": csv.QUOTE_NONE},
        batch_size=batch_size,
        num_workers=num_workers,
        cache_dir=cache,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def end_to_end(cache: str, batch_size: int) -> tuple[float, int]:
    start = time.perf_counter()
    dm = build(cache, batch_size)
    tokens = 0
    for batch in dm.train_dataloader():
        tokens += int(batch["lengths"].sum())
    return time.perf_counter() - start, tokens


class TinyClassifier(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 64, padding_idx=0)
        self.encoder = RecurrentEncoder(cell="gru", input_size=64, hidden_size=128)
        self.head = nn.Linear(128, num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder(self.embed(input_ids), lengths=lengths)  # [B, T, H]
        last = out[torch.arange(out.size(0)), lengths - 1]  # [B, H]
        return self.head(last)


def loader_share(dm: TextClassificationData, steps: int) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = TinyClassifier(dm.vocab_size, dm.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader_time = total = 0.0
    it = iter(dm.train_dataloader())
    for step in range(steps + 5):
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            batch = next(it)
        t1 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(batch["input_ids"], batch["lengths"]), batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if step >= 5:  # warm-up steps excluded
            loader_time += t1 - t0
            total += t2 - t0
    return loader_time / steps * 1e3, total / steps * 1e3, loader_time / total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared CPU)")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        cold_s, tokens = end_to_end(cache, args.batch_size)
        warm_s, tokens_warm = end_to_end(cache, args.batch_size)
        assert tokens == tokens_warm
        batch_start = time.perf_counter()
        dm = build(cache, args.batch_size)
        setup_s = time.perf_counter() - batch_start
        loader_start = time.perf_counter()
        n_batches = sum(1 for _ in dm.train_dataloader())
        pass_s = time.perf_counter() - loader_start
        shares = {w: loader_share(build(cache, args.batch_size, num_workers=w), args.steps) for w in (0, 2)}

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {load}), "
        f"torch {torch.__version__}, {args.threads} torch thread(s)"
    )
    print(f"SST-2 train: {tokens:,} tokens in {n_batches:,} batches of {args.batch_size}\n")
    print("| measurement | time | throughput |")
    print("|---|---|---|")
    rows = [
        ("end to end, cold cache (load, train tokenizer, map, one pass)", cold_s, tokens / cold_s),
        ("end to end, warm cache (load, reload tokenizer and map, one pass)", warm_s, tokens / warm_s),
        ("module construction + setup, warm cache", setup_s, None),
        ("one pass of the bucketed loader (batching only)", pass_s, tokens / pass_s),
    ]
    for name, seconds, rate in rows:
        print(f"| {name} | {seconds:.2f} s | {f'{rate:,.0f} tokens/s' if rate else ''} |")
    print()
    print(
        f"| GRU classifier, {args.steps} steps, batch {args.batch_size} "
        "| next(iter) ms | step ms | loader share |"
    )
    print("|---|---|---|---|")
    for workers, (load_ms, step_ms, share) in shares.items():
        print(f"| num_workers={workers} | {load_ms:.2f} | {step_ms:.2f} | {share:.1%} |")


if __name__ == "__main__":
    main()
