"""One training step of the zoo's ``LanguageModel`` through the Lightning Trainer vs a hand-written loop.

Run from the repository root::

    python benchmarks/train_step.py --clock cpu --threads 1 --json train_step.json

The model is the zoo's ``LanguageModel`` (embedding, 2-layer GRU, tied decoder; PTB small sizes by
default: vocabulary 10,000, 200 units, batch 20, 35 steps). Both sides start from the same weights, read
the same batches (truncated BPTT, state carried) and take the same optimiser steps (the model's own
AdamW from ``configure_optimizers``):

- ``plain``: ``for batch in batches: logits, state = model(ids, state); loss; backward; step``;
- ``lightning``: ``Trainer.fit`` with the zoo's ``training_step`` (logging, metrics, hooks), no
  checkpointing, progress bar or validation, either without a logger or with ``ZooMLFlowLogger`` on a
  temporary SQLite store (``log_every_n_steps`` left at Lightning's default, 50).

Each step is timed from the start of one batch to the start of the next (so data fetching, hooks and
logging count), on the chosen clock; the first ``--warmup`` steps are dropped and the median kept. The
three runs are interleaved for ``--rounds`` rounds and the ratio is the median over rounds of each
Lightning run's median step over the plain loop's in the same round.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from zoo.cells import detach_state
from zoo.encoder import EncoderConfig
from zoo.tasks import LanguageModel

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def make_model(args: argparse.Namespace) -> LanguageModel:
    torch.manual_seed(0)
    enc = EncoderConfig(cell=args.cell, hidden_size=args.hidden, num_layers=2, dropout=0.0)
    return LanguageModel(enc, vocab_size=args.vocab, embedding_dim=args.hidden, tie_weights=True, dropout=0.0)


def make_batches(args: argparse.Namespace) -> DataLoader[dict[str, torch.Tensor]]:
    """Fixed random token batches (a PTB-sized vocabulary) behind one ``DataLoader``, read by both sides."""
    g = torch.Generator().manual_seed(1)
    stream = torch.randint(0, args.vocab, (args.batch, args.steps * args.bptt + 1), generator=g)
    batches = []
    for i in range(args.steps):
        s = slice(i * args.bptt, (i + 1) * args.bptt)
        ids = stream[:, s]
        tgt = stream[:, s.start + 1 : s.stop + 1]
        batches.append({"input_ids": ids, "targets": tgt, "reset": torch.tensor(i == 0)})
    return DataLoader(batches, batch_size=None)  # type: ignore[arg-type]


def plain_loop(
    model: LanguageModel, batches: DataLoader[dict[str, torch.Tensor]], clock: Callable[[], float]
) -> list[float]:
    """The hand-written loop: same model, same batches, same optimiser; returns per-step times (ms)."""
    optimizer = model.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    model.train()
    state: Any = None
    marks = []
    for batch in batches:
        marks.append(clock())
        ids, tgt = batch["input_ids"], batch["targets"]
        if bool(batch["reset"]):
            state = None
        # the model's own loss (decoder + cross-entropy in one function), as its training_step computes it,
        # so that the ratio measures the Trainer around the step and not a different loss
        hidden, state = model.encoder(model.encoder_inputs(ids), state)
        state = detach_state(state)
        loss = model.nll_sum(hidden, tgt) / tgt.numel()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    marks.append(clock())
    return [1e3 * (b - a) for a, b in itertools.pairwise(marks)]


class StepTimer(L.Callback):
    """Marks the start of every training batch and the end of the last one."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.marks: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.marks.append(self.clock())

    def on_train_end(self, *args: Any) -> None:
        self.marks.append(self.clock())

    def steps(self) -> list[float]:
        return [1e3 * (b - a) for a, b in itertools.pairwise(self.marks)]


def lightning_run(
    model: LanguageModel,
    batches: DataLoader[dict[str, torch.Tensor]],
    clock: Callable[[], float],
    mlflow_dir: str | None,
) -> list[float]:
    logger: Any = False
    if mlflow_dir is not None:
        from zoo.tracking import ZooMLFlowLogger

        uri = f"sqlite:///{os.path.join(mlflow_dir, 'mlflow.db')}"
        logger = ZooMLFlowLogger(experiment_name="train-step-bench", tracking_uri=uri)
    timer = StepTimer(clock)
    trainer = L.Trainer(
        max_steps=len(batches),
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=batches)
    return timer.steps()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps of each run not counted")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median ratio reported)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    batches = make_batches(args)
    start = make_model(args).state_dict()
    medians: dict[str, list[float]] = {"plain": [], "lightning": [], "lightning+mlflow": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in medians:
                model = make_model(args)
                model.load_state_dict(start)
                if name == "plain":
                    steps = plain_loop(model, batches, clock)
                else:
                    mlflow_dir = os.path.join(tmp, f"r{r}") if name.endswith("mlflow") else None
                    if mlflow_dir:
                        os.makedirs(mlflow_dir)
                    steps = lightning_run(model, batches, clock, mlflow_dir)
                medians[name].append(statistics.median(steps[args.warmup :]))
                print(f"round {r} {name:18s} median step {medians[name][-1]:.2f} ms", flush=True)
    rows = []
    for name, ms in medians.items():
        ratios = [m / p for m, p in zip(ms, medians["plain"], strict=True)]
        rows.append(
            {"run": name, "ms_per_step": statistics.median(ms), "ratio_to_plain": statistics.median(ratios)}
        )
    print()
    print(
        f"LanguageModel ({args.cell}, 2x{args.hidden}, tied, vocab {args.vocab}), batch {args.batch}, BPTT "
        f"{args.bptt}, {args.steps} steps ({args.warmup} warm-up), {args.clock} clock, "
        f"{torch.get_num_threads()} threads"
    )
    print("| run | ms / step (median) | ratio to plain loop |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['run']} | {row['ms_per_step']:.2f} | {row['ratio_to_plain']:.3f} |")
    if args.json:
        machine = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
        }
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "rows": rows, "medians": medians}, f, indent=2)


if __name__ == "__main__":
    main()
