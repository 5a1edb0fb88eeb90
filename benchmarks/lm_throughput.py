"""Tokens per second of the PTB small recipe through ``zoo fit`` vs a plain PyTorch word-level LM.

Run from the repository root (needs the PTB files, see below)::

    python benchmarks/lm_throughput.py --clock cpu --threads 1 --json lm_throughput.json

``zoo``: the real CLI (``zoo.cli.main``) in a fresh process per run,
``zoo fit -c recipes/lm/ptb-<cell>.yaml`` (``ptb-gru.yaml`` with ``--model.encoder.cell`` for cells
without their own recipe) on the local PTB text files, with
``--trainer.limit_train_batches N``, one epoch, no validation, checkpoint or logger, and a callback
that marks the start of every training batch.

``plain``: a word-level LM written here the way pytorch/examples ``word_language_model`` writes it:
the corpus read into a dictionary with ``<eos>`` per line, ``batchify`` into 20 columns, ``get_batch`` of
35 steps (time-major), ``repackage_hidden`` between batches, embedding 200 -> 2-layer ``nn.LSTM`` /
``nn.GRU`` / ``nn.RNN(tanh)`` 200 -> linear decoder, cross-entropy, ``clip_grad_norm_`` and plain SGD
(``p.data.add_(p.grad, alpha=-lr)``), lr 1, clip 5 (the recipe's; the example uses 0.25, which costs the
same). Sizes are the recipe's: 2x200, untied, no dropout, BPTT 35, batch 20.

Each run is a fresh Python process by default (``--same-process`` runs both sides in this one). Each
step is timed from the start of one batch to the start of the next; the first ``--warmup`` steps
are dropped, and tokens/s is ``batch * bptt`` over the median step. The two sides alternate for
``--rounds`` rounds; the ratio is the median over rounds of zoo's tokens/s over the plain loop's.

PTB files: ``$ZOO_SHARED_DATA/ptb``, else ``<repo>/../shared/data/ptb``, else ``/work/shared/data/ptb``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock: Callable[[], float] = time.process_time
TORCH_RNN = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH"}


def ptb_dir() -> Path:
    """The PTB folder, by the zoo's rule for shared data."""
    candidates = []
    if os.environ.get("ZOO_SHARED_DATA"):
        candidates.append(Path(os.environ["ZOO_SHARED_DATA"]) / "ptb")
    candidates += [REPO.parent / "shared" / "data" / "ptb", Path("/work/shared/data/ptb")]
    for c in candidates:
        if (c / "ptb.train.txt").exists():
            return c
    raise SystemExit(f"PTB not found; looked in {', '.join(map(str, candidates))} (set ZOO_SHARED_DATA)")


# -- the plain loop, after pytorch/examples word_language_model -----------------------------------------


class Corpus:
    """Word ids of a text file, one ``<eos>`` per line (as the example's ``data.Corpus``)."""

    def __init__(self, path: Path) -> None:
        self.word2idx: dict[str, int] = {}
        ids: list[int] = []
        with open(path, encoding="utf8") as f:
            for line in f:
                for word in [*line.split(), "<eos>"]:
                    ids.append(self.word2idx.setdefault(word, len(self.word2idx)))
        self.train = torch.tensor(ids, dtype=torch.long)


def batchify(data: Tensor, bsz: int) -> Tensor:
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()


def get_batch(source: Tensor, i: int, bptt: int) -> tuple[Tensor, Tensor]:
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def repackage_hidden(h: Any) -> Any:
    if isinstance(h, Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


class RNNModel(nn.Module):
    """Encoder, recurrent module, decoder (the example's model, dropout 0, untied)."""

    def __init__(self, rnn_type: str, ntoken: int, ninp: int, nhid: int, nlayers: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ("LSTM", "GRU"):
            self.rnn: nn.RNNBase = getattr(nn, rnn_type)(ninp, nhid, nlayers)
        else:
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity="tanh")
        self.decoder = nn.Linear(nhid, ntoken)
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def forward(self, x: Tensor, hidden: Any) -> tuple[Tensor, Any]:
        output, hidden = self.rnn(self.encoder(x), hidden)
        return self.decoder(output).view(-1, self.decoder.out_features), hidden

    def init_hidden(self, bsz: int) -> Any:
        w = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid))
        return w.new_zeros(self.nlayers, bsz, self.nhid)


def plain_run(cell: str, corpus: Corpus, args: argparse.Namespace) -> list[float]:
    torch.manual_seed(0)
    data = batchify(corpus.train, args.batch)
    model = RNNModel(TORCH_RNN[cell], len(corpus.word2idx), 200, 200, 2)
    criterion = nn.CrossEntropyLoss()
    model.train()
    hidden = model.init_hidden(args.batch)
    marks = []
    for i in range(0, args.steps * args.bptt, args.bptt):
        marks.append(_clock())
        inputs, targets = get_batch(data, i, args.bptt)
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(inputs, hidden)
        loss = criterion(output, targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-args.lr)
    marks.append(_clock())
    return [1e3 * (b - a) for a, b in itertools.pairwise(marks)]


# -- zoo fit ---------------------------------------------------------------------------------------------

MARKS: list[float] = []


class BatchMarks(L.Callback):
    """Marks the start of every training batch and the end of training (into ``MARKS``)."""

    def on_train_batch_start(self, *args: Any) -> None:
        MARKS.append(_clock())

    def on_train_end(self, *args: Any) -> None:
        MARKS.append(_clock())


def zoo_run(cell: str, ptb: Path, args: argparse.Namespace, workdir: str) -> list[float]:
    from zoo.cli import main as zoo_main

    recipe = REPO / "recipes" / "lm" / f"ptb-{cell}.yaml"
    extra: list[str] = []
    if not recipe.exists():
        recipe = REPO / "recipes" / "lm" / "ptb-gru.yaml"
        extra = ["--model.encoder.cell", cell]
    files = {s: str(ptb / f"ptb.{s}.txt") for s in ("train", "validation", "test")}
    files["validation"] = str(ptb / "ptb.valid.txt")
    argv = [
        "fit",
        "-c",
        str(recipe),
        *extra,
        "--data.path",
        "text",
        "--data.text_column",
        "text",
        "--data.data_files",
        json.dumps(files),
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        str(args.steps),
        "--trainer.limit_val_batches",
        "0",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.default_root_dir",
        workdir,
        "--trainer.callbacks+=__main__.BatchMarks"
        if __name__ == "__main__"
        else "--trainer.callbacks+=" + __name__ + ".BatchMarks",
    ]
    MARKS.clear()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = zoo_main(argv)
    if rc not in (0, None) or len(MARKS) < 2:
        raise SystemExit(f"zoo fit failed (rc={rc}): zoo {' '.join(argv)}")
    return [1e3 * (b - a) for a, b in itertools.pairwise(MARKS)]


def run_side(side: str, cell: str, args: argparse.Namespace, ptb: Path, tmp: str) -> list[float]:
    """One side's per-step times (ms), in a fresh process unless ``--same-process``."""
    if args.same_process:
        if side == "plain":
            return plain_run(cell, Corpus(ptb / "ptb.train.txt"), args)
        return zoo_run(cell, ptb, args, tmp)
    out = os.path.join(tmp, f"{side}-{cell}.json")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--cells", cell, "--out", out]
    for key in ("steps", "warmup", "batch", "bptt", "lr", "clip", "clock", "threads"):
        value = getattr(args, key)
        if value is not None:
            cmd += [f"--{key}", str(value)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        return list(json.load(f))


def main(argv: list[str] | None = None) -> None:
    global _clock
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn_tanh"], choices=sorted(TORCH_RNN))
    parser.add_argument("--steps", type=int, default=60, help="training batches per run")
    parser.add_argument("--warmup", type=int, default=10, help="first batches of each run not counted")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--clip", type=float, default=5.0)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="run both sides in this process (default: each run in a fresh one, so neither inherits the "
        "other's allocator state or imports)",
    )
    parser.add_argument("--side", choices=["plain", "zoo"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ptb = ptb_dir()
    if args.side is not None:  # a child run: one side, step times to --out
        with tempfile.TemporaryDirectory() as tmp:
            if args.side == "plain":
                steps = plain_run(args.cells[0], Corpus(ptb / "ptb.train.txt"), args)
            else:
                steps = zoo_run(args.cells[0], ptb, args, tmp)
        with open(args.out, "w") as f:
            json.dump(steps, f)
        return
    tokens = args.batch * args.bptt
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells:
            runs: dict[str, list[float]] = {"plain": [], "zoo": []}
            for r in range(args.rounds):
                for side in ("plain", "zoo"):
                    steps = run_side(side, cell, args, ptb, tmp)
                    tps = tokens / (statistics.median(steps[args.warmup :]) / 1e3)
                    runs[side].append(tps)
                    print(f"{cell:9s} round {r} {side:5s} {tps:9.0f} tokens/s", flush=True)
            ratios = [z / p for z, p in zip(runs["zoo"], runs["plain"], strict=True)]
            rows.append(
                {
                    "cell": cell,
                    "plain_tokens_per_s": statistics.median(runs["plain"]),
                    "zoo_tokens_per_s": statistics.median(runs["zoo"]),
                    "ratio": statistics.median(ratios),
                    "rounds": runs,
                }
            )
    print()
    print(
        f"PTB small (2x200, untied, BPTT {args.bptt}, batch {args.batch}), {args.steps} steps "
        f"({args.warmup} warm-up), {args.clock} clock, {torch.get_num_threads()} threads"
    )
    print("| cell | plain loop tokens/s | zoo fit tokens/s | zoo / plain |\n|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['cell']} | {row['plain_tokens_per_s']:.0f} | {row['zoo_tokens_per_s']:.0f} | "
            f"{row['ratio']:.3f} |"
        )
    if args.json:
        machine = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
        }
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
