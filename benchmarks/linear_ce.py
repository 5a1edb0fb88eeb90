"""Decoder + cross-entropy, forward and backward: ``linear_cross_entropy`` vs ``F.cross_entropy(F.linear)``.

Run from the repository root::

    python benchmarks/linear_ce.py                        # PTB small: 700 rows, 200 features, 10,002 words
    python benchmarks/linear_ce.py --vocab 10000 --repeats 21 --threads 1

Both variants get the same inputs and are timed alternately (``--repeats`` rounds after a warm-up, process
CPU time); the table gives each one's median and the median over rounds of fused/plain. Both results and
gradients are checked to agree before timing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from zoo.tasks._linear_ce import linear_cross_entropy


def step(
    fused: bool, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, t: torch.Tensor
) -> Callable[[], None]:
    """One forward+backward of the summed loss; gradients dropped each call."""

    def run() -> None:
        x.grad = w.grad = b.grad = None
        if fused:
            loss = linear_cross_entropy(x, w, b, t, reduction="sum")
        else:
            loss = F.cross_entropy(F.linear(x, w, b), t, reduction="sum")
        loss.backward()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=700, help="tokens per batch (batch x BPTT)")
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--vocab", type=int, default=10002)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.features, requires_grad=True)
    w = (0.1 * torch.randn(args.vocab, args.features)).requires_grad_()
    b = torch.zeros(args.vocab, requires_grad=True)
    t = torch.randint(args.vocab, (args.rows,))
    grads = []
    for fused in (False, True):
        step(fused, x, w, b, t)()
        grads.append([g.clone() for g in (x.grad, w.grad, b.grad) if g is not None])
    for plain, fused_g in zip(*grads, strict=True):
        torch.testing.assert_close(fused_g, plain, rtol=1e-4, atol=1e-5)
    runs = {"plain": step(False, x, w, b, t), "fused": step(True, x, w, b, t)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.process_time()
            fn()
            times[name].append(1e3 * (time.process_time() - start))
    ratios = [f / p for f, p in zip(times["fused"], times["plain"], strict=True)]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU clock, rows={args.rows} "
        f"features={args.features} vocab={args.vocab}, forward+backward, {args.repeats} rounds"
    )
    print("| variant | ms (median) | ratio to plain |\n|---|---:|---:|")
    print(f"| F.cross_entropy(F.linear) | {statistics.median(times['plain']):.1f} | 1.00 |")
    fused_ms, ratio = statistics.median(times["fused"]), statistics.median(ratios)
    print(f"| linear_cross_entropy | {fused_ms:.1f} | {ratio:.2f} |")
    print("rounds (fused/plain): " + " ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
