"""This CPU's float32 matmul peak, and the fraction of it each recurrence reaches (forward+backward).

FLOPs are counted from the matmuls only (element-wise work is ignored): per token, forward
``2·I·rows_in + 2·H·rows_rec`` where ``rows_in``/``rows_rec`` are the output rows of the input and
recurrent projections (a GRU: ``3(2IH + 2H²)``), and the backward about twice that (the input and
weight gradients), so a training step is 3x the forward count. The times come from
``benchmarks/kernels.py``'s round-robin measurement, in the same process as the peak.

    python benchmarks/flops.py --T 128 512 --json flops.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
from kernels import B, H, I, build_cases, machine, measure  # same folder (run as a script)

# (input-projection rows, recurrent-matmul rows) per variant, in units of H
SHAPES: dict[str, tuple[int, int]] = {
    "nn.GRU": (3, 3),
    "nn.LSTM": (4, 4),
    "gru": (3, 3),
    "gru_cho": (3, 3),
    "gru1": (1, 3),
    "gru2": (1, 3),
    "gru3": (1, 1),
    "mgu": (2, 2),
    "indrnn": (1, 0),
    "min_gru": (2, 0),
    "min_gru_fused": (2, 0),
    "min_gru_scan": (2, 0),
}


def flops_per_token(name: str) -> float:
    """Forward+backward matmul FLOPs per token (3x the forward count)."""
    rows_in, rows_rec = SHAPES[name.removesuffix("_loop")]
    forward = 2 * I * rows_in * H + 2 * H * rows_rec * H
    return 3.0 * forward


def matmul_peak(size: int = 2048, repeats: int = 5, clock: str = "wall") -> float:
    """Best float32 ``size x size`` matmul rate in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    now = time.process_time if clock == "cpu" else time.perf_counter
    best = math.inf
    for _ in range(repeats):
        t0 = now()
        a @ b
        best = min(best, now() - t0)
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--T", type=int, nargs="+", default=[128])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="variants to run (nn.GRU always runs)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="wall clock or process CPU time"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peaks = [matmul_peak(clock=args.clock)]
    rows = []
    for seq_len in args.T:
        cases = build_cases(seq_len)
        if args.only:
            cases = {n: f for n, f in cases.items() if n == "nn.GRU" or n in args.only}
        res = measure(cases, args.repeats, warmup=1, clock=args.clock)
        peaks.append(matmul_peak(clock=args.clock))
        for name, r in res.items():
            gflop = flops_per_token(name) * B * seq_len / 1e9
            rows.append({"T": seq_len, "variant": name, "ms": r["ms"], "gflop": gflop})
    peak = statistics.median(peaks)
    print(
        f"machine: {machine()}, {args.clock} clock; float32 matmul peak "
        f"(2048², median of {len(peaks)}): {peak:.1f} GFLOP/s\n"
    )
    print("| T | variant | ms | GFLOP (fwd+bwd, matmuls) | GFLOP/s | % of peak |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        rate = r["gflop"] / (r["ms"] / 1000)
        r["gflops_per_s"], r["fraction_of_peak"] = rate, rate / peak
        print(
            f"| {r['T']} | {r['variant']} | {r['ms']:.1f} | {r['gflop']:.2f} | {rate:.1f} "
            f"| {100 * rate / peak:.0f}% |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "peak_gflops": peak, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
