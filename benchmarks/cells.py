"""Forward+backward time per batch of every registered cell, as a ratio to ``torch.nn.GRU`` in one process.

Run from the repository root::

    python benchmarks/cells.py                      # T = 128 and 512, a few minutes on 2 CPU cores
    python benchmarks/cells.py --T 64 128 512 2048 --repeats 7 --json cells.json
    python benchmarks/cells.py --clock cpu --threads 1 --json cells.json   # the stable setting
    python benchmarks/cells.py --device cuda --T 64 128 512 2048 --json cells_cuda.json

``--clock cpu`` measures process CPU time (``time.process_time``): on a machine shared with other jobs it
is far steadier than wall time, since time spent waiting for a core is not counted; with more than one
thread it sums the threads' time, so compare like with like. ``--clock wall`` (default) is elapsed time.
``--device cuda`` times on the GPU with the wall clock, synchronising before and after each run;
``--graphs`` adds each non-fused cell captured whole (forward and backward) as CUDA graphs with
``torch.cuda.make_graphed_callables``, listed as ``name[graphed]``.

Every module is warmed up, then timed ``--repeats`` times, each run next to a run of ``torch.nn.GRU``;
the table gives the median time and the median ratio to those neighbouring ``nn.GRU`` runs, so the
ratios survive a noisy machine. ``nn.GRU``, ``nn.LSTM`` and ``nn.RNN`` are in the table as baselines. Extra
configurations of a cell (e.g. ``min_gru`` with each scan algorithm) are listed as ``name[option=value]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import zoo
from zoo.cells import build_cell, list_cells

# cells whose algorithm is an option: each choice is timed too
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "min_gru": [{"mode": "loop"}, {"mode": "scan"}],
    "min_lstm": [{"mode": "loop"}, {"mode": "scan"}],
}


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter
_device = torch.device("cpu")
T_CHOICES = (64, 128, 512, 2048)


def time_once(fn: Callable[[], None]) -> float:
    """Time of one call of ``fn`` in milliseconds on the chosen clock (``--clock``)."""
    if _device.type == "cuda":
        torch.cuda.synchronize(_device)
    start = _clock()
    fn()
    if _device.type == "cuda":
        torch.cuda.synchronize(_device)
    return 1e3 * (_clock() - start)


def train_step(module: nn.Module, x: Tensor) -> Callable[[], None]:
    """Forward and backward of ``module`` on ``x`` (gradients dropped each call)."""

    def run() -> None:
        module.zero_grad(set_to_none=True)
        out, _ = module(x)
        out.sum().backward()

    return run


class _Graphed(nn.Module):
    """A layer's forward and backward for one input shape, captured as CUDA graphs and replayed."""

    def __init__(self, layer: nn.Module, x: Tensor) -> None:
        super().__init__()
        self.layer = layer
        self.graphed = torch.cuda.make_graphed_callables(layer, (x,))

    def forward(self, x: Tensor) -> Any:
        return self.graphed(x)


def baselines(input_size: int, hidden_size: int) -> dict[str, nn.Module]:
    return {
        "torch.nn.GRU": nn.GRU(input_size, hidden_size, batch_first=True),
        "torch.nn.LSTM": nn.LSTM(input_size, hidden_size, batch_first=True),
        "torch.nn.RNN": nn.RNN(input_size, hidden_size, batch_first=True),
    }


def cells_to_time(input_size: int, hidden_size: int, only: list[str] | None) -> dict[str, nn.Module]:
    modules: dict[str, nn.Module] = {}
    for name in list_cells():
        if only and name not in only:
            continue
        modules[name] = build_cell(name, input_size, hidden_size)
        for options in VARIANTS.get(name, []):
            label = name + "[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]"
            modules[label] = build_cell(name, input_size, hidden_size, **options)
    return modules


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every module, interleaved with ``nn.GRU`` so that each ratio compares neighbouring runs.

    Each round times ``GRU, m1, GRU, m2, GRU, ...``; a module's ratio in a round is its time over the
    mean of the two ``nn.GRU`` runs around it, and the reported ratio is the median over rounds. On a
    shared, noisy machine this keeps the ratios honest where absolute times drift.
    """
    torch.manual_seed(0)
    rows: list[dict[str, Any]] = []
    for T in args.T:
        x = torch.randn(args.batch, T, args.input_size, device=_device)
        modules = {**baselines(args.input_size, args.hidden_size)}
        modules.update(cells_to_time(args.input_size, args.hidden_size, args.cells))
        modules = {name: module.to(_device) for name, module in modules.items()}
        if args.graphs:
            for name in [n for n in modules if n.split("[")[0] in list_cells()]:
                if zoo.get_cell_spec(name.split("[")[0]).fused:
                    continue
                try:
                    modules[name + "[graphed]"] = _Graphed(modules[name], x)
                except Exception as err:  # a cell that cannot be captured is reported, not fatal
                    print(f"  T={T:5d} {name}[graphed] not captured: {err!r}", flush=True)
        steps = {name: train_step(module, x) for name, module in modules.items()}
        gru = steps["torch.nn.GRU"]
        for fn in steps.values():  # warm-up: allocator, oneDNN primitives, first-call dispatch
            fn()
        times: dict[str, list[float]] = {name: [] for name in steps}
        ratios: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.repeats):
            before = time_once(gru)
            for name, fn in steps.items():
                ms = time_once(fn)
                after = time_once(gru)
                times[name].append(ms)
                ratios[name].append(ms / (0.5 * (before + after)))
                before = after
        for name in steps:
            row = {
                "cell": name,
                "T": T,
                "ms": statistics.median(times[name]),
                "ratio_to_gru": statistics.median(ratios[name]),
                "round_ratios": [round(r, 3) for r in ratios[name]],
            }
            rows.append(row)
            rounds = " ".join(f"{r:.2f}" for r in ratios[name])
            print(
                f"  T={T:5d} {name:24s} {row['ms']:9.1f} ms  {row['ratio_to_gru']:5.2f}x  rounds {rounds}",
                flush=True,
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """One row per cell; for each T the time per batch and the ratio to ``nn.GRU``, side by side."""
    lengths = sorted({row["T"] for row in rows})
    cells = list(dict.fromkeys(row["cell"] for row in rows))
    by_key = {(row["cell"], row["T"]): row for row in rows}
    head = "| cell | " + " | ".join(f"T={t} ms | T={t} ×GRU" for t in lengths) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(lengths)]
    for cell in cells:
        parts = []
        for t in lengths:
            row = by_key.get((cell, t))
            parts.append("– | –" if row is None else f"{row['ms']:.1f} | {row['ratio_to_gru']:.2f}")
        lines.append(f"| {cell} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--T", type=int, nargs="+", default=[128, 512], choices=T_CHOICES, help="sequence lengths"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="wall: elapsed time; cpu: process CPU time"
    )
    parser.add_argument("--cells", nargs="+", default=None, help="only these registered cells")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (cuda times with the wall clock)")
    parser.add_argument("--graphs", action="store_true", help="with --device cuda: also time CUDA graphs")
    parser.add_argument("--json", default=None, help="also write the rows and the machine to this file")
    args = parser.parse_args(argv)
    global _clock, _device
    _clock = CLOCKS[args.clock]
    _device = torch.device(args.device)
    if _device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device here; use --device cpu")
        if args.clock != "wall":
            parser.error("--device cuda times with --clock wall (CPU time does not count GPU work)")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif args.graphs:
        parser.error("--graphs needs --device cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "clock": args.clock,
        "device": torch.cuda.get_device_name(_device) if _device.type == "cuda" else "cpu",
        "kernels": os.environ.get("ZOO_KERNELS", "1"),
        "zoo_cells": zoo.list_cells(),
    }
    print(
        f"torch {machine['torch']}, {machine['threads']} threads, {args.clock} clock, float32, "
        f"{machine['device']}, ZOO_KERNELS={machine['kernels']}, "
        f"B={args.batch} I={args.input_size} H={args.hidden_size}, forward+backward, median of {args.repeats}"
    )
    rows = run(args)
    print()
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
