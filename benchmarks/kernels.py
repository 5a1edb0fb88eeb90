"""Forward+backward time of the hand-written recurrence kernels (zoo.cells.kernels) against nn.GRU.

Every variant runs side by side in one process, round-robin (each repeat runs every variant once), so
a slow spell of a shared machine hits all of them alike; the ratio column is the median over repeats
of (variant / nn.GRU in the same round). Each variant includes its input projection (one matmul over
all steps) and the backward pass to the input, every weight and the initial state.

    python benchmarks/kernels.py                      # T=128 and 512, every variant
    python benchmarks/kernels.py --T 128 --only mgu mgu_loop --json out.json
    # an earlier version side by side: a package directory (zoo/cells/kernels) or, before the package,
    # the single file zoo/cells/_kernels.py
    mkdir /tmp/old && git archive REV zoo/cells | tar -x -C /tmp/old
    python benchmarks/kernels.py --T 128 --only mgu --against /tmp/old/zoo/cells/kernels   # adds mgu@old
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from zoo.cells import kernels as K

B, I, H = 32, 128, 256

Step = Callable[[], None]


def _params(*shapes: tuple[int, ...]) -> list[Tensor]:
    bound = 1.0 / math.sqrt(H)
    return [torch.empty(s).uniform_(-bound, bound).requires_grad_() for s in shapes]


def _backward(out: Tensor, h: Tensor) -> None:
    (out.sum() + h.sum()).backward()


def _loop(fn: Callable[[], None]) -> Step:
    """The same code with the kernels off: the plain autograd loop of the same equations."""

    def run() -> None:
        with K.use_kernels(False):
            fn()

    return run


def _min_gru_scan(x: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """minGRU as a log-space parallel scan (Heinsen 2023), g(h~) = h~ + 0.5 / σ(h~) to keep b > 0."""
    k, hh = nn.functional.linear(x, w, b).chunk(2, -1)
    log_z = -nn.functional.softplus(-k)
    log_coeffs = -nn.functional.softplus(k)
    log_h_tilde = torch.where(hh >= 0, (nn.functional.relu(hh) + 0.5).log(), -nn.functional.softplus(-hh))
    a_star = log_coeffs.cumsum(1)
    log_h = a_star + torch.logcumsumexp(log_z + log_h_tilde - a_star, 1)
    out = log_h.exp()
    return out, out[:, -1]


def load_kernels(path: str) -> ModuleType:
    """Another version of the kernels, to time next to this one: a copy of the ``zoo/cells/kernels``
    package directory or an old single-file ``zoo/cells/_kernels.py`` (e.g. from ``git archive``)."""
    name = "_kernels_against"
    if os.path.isdir(path):
        # the package imports itself by its absolute name: a renamed copy imports its own modules
        root = tempfile.mkdtemp()
        shutil.copytree(path, os.path.join(root, name))
        for file in os.listdir(os.path.join(root, name)):
            if file.endswith(".py"):
                full = os.path.join(root, name, file)
                with open(full) as f:
                    text = f.read().replace("zoo.cells.kernels", name)
                with open(full, "w") as f:
                    f.write(text)
        sys.path.insert(0, root)
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--against: cannot load {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_cases(seq_len: int, K: ModuleType = K) -> dict[str, Step]:
    """Every variant as a zero-argument step (forward + backward), sharing one input batch."""
    torch.manual_seed(0)
    x = torch.randn(B, seq_len, I, requires_grad=True)
    h0 = torch.zeros(B, H, requires_grad=True)
    gru = nn.GRU(I, H, batch_first=True)
    lstm = nn.LSTM(I, H, batch_first=True)
    w3, b3 = _params((3 * H, I), (3 * H,))
    w2, b2 = _params((2 * H, I), (2 * H,))
    w1, b1 = _params((H, I), (H,))
    u3, c3 = _params((3 * H, H), (3 * H,))
    ug, cg, un, cn = _params((2 * H, H), (2 * H,), (H, H), (H,))
    uf, cf, uh, ch = _params((H, H), (H,), (H, H), (H,))
    cases: dict[str, Step] = {}

    def nn_gru() -> None:
        out, h = gru(x, h0.unsqueeze(0))
        _backward(out, h)

    def nn_lstm() -> None:
        out, (h, _) = lstm(x, (h0.unsqueeze(0), h0.unsqueeze(0)))
        _backward(out, h)

    def cho() -> None:
        _backward(*K.gru_reset_before(nn.functional.linear(x, w3, b3), h0, un, cn, ug, cg))

    def gru1() -> None:
        _backward(*K.gru_reset_before(nn.functional.linear(x, w1, b1), h0, un, None, ug, cg))

    def gru2() -> None:
        _backward(*K.gru_reset_before(nn.functional.linear(x, w1, b1), h0, un, None, ug, None))

    def gru3() -> None:
        _backward(*K.gru_reset_before(nn.functional.linear(x, w1, b1), h0, un, None, None, cg))

    gx, gh = (torch.ones(3 * H, requires_grad=True) for _ in range(2))  # layer-norm gains

    def ln_gru() -> None:
        gi = nn.functional.layer_norm(nn.functional.linear(x, w3), (3 * H,), gx, b3)
        _backward(*K.ln_gru(gi, h0, u3, gh, c3))

    def mgu() -> None:
        _backward(*K.mgu(nn.functional.linear(x, w2, b2), h0, uf, cf, uh, ch))

    def min_gru() -> None:
        k, hh = nn.functional.linear(x, w2, b2).chunk(2, -1)
        z = torch.sigmoid(k)
        _backward(*K.linear_recurrence(1 - z, z * hh, h0))

    def min_gru_fused() -> None:
        _backward(*K.min_gru_packed(nn.functional.linear(x, w2, b2), h0))

    def min_gru_scan() -> None:
        _backward(*_min_gru_scan(x, w2, b2))

    cases["nn.GRU"] = nn_gru
    cases["nn.LSTM"] = nn_lstm
    for name, fn in [
        ("gru_cho", cho),
        ("gru1", gru1),
        ("gru2", gru2),
        ("gru3", gru3),
        ("ln_gru", ln_gru),
        ("mgu", mgu),
        ("min_gru", min_gru),
    ]:
        cases[name] = fn
        cases[name + "_loop"] = _loop(fn)
    cases["min_gru_fused"] = min_gru_fused
    cases["min_gru_scan"] = min_gru_scan
    return cases


def measure(
    cases: dict[str, Step], repeats: int, warmup: int, baseline: str = "nn.GRU", clock: str = "wall"
) -> dict[str, dict[str, Any]]:
    """Round-robin timing; returns ``{name: {"ms": median ms, "ratio": median ratio to baseline}}``.

    ``clock="cpu"`` times the process's CPU time instead of the wall clock: on a shared, oversubscribed
    machine it leaves out the time the process waited for a core (exact for one thread; with more
    threads it also counts their spinning).
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    names = list(cases)
    for _ in range(warmup):
        for n in names:
            cases[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeats):
        for n in names:
            t0 = now()
            cases[n]()
            times[n].append(now() - t0)
    base = times[baseline]
    return {
        n: {
            "ms": 1000 * statistics.median(ts),
            "ratio": statistics.median(t / b for t, b in zip(ts, base, strict=True)),
            "rounds": [t / b for t, b in zip(ts, base, strict=True)],
            "round_ms": [1000 * t for t in ts],
        }
        for n, ts in times.items()
    }


def profile(cases: dict[str, Step], names: list[str], rows: int = 12) -> None:
    """Print the ops taking the most self CPU time in one forward+backward of each variant."""
    for name in names:
        cases[name]()  # warm-up
        with torch.profiler.profile() as prof:
            cases[name]()
        print(f"\n### {name}\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load:.1f} at start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--T", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="variants to run (nn.GRU always runs as the baseline)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="wall clock or process CPU time"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--against",
        help="another version of the kernels (a zoo/cells/kernels directory or an old _kernels.py): "
        "its variants run next to these as NAME@old",
    )
    parser.add_argument(
        "--profile", nargs="+", help="instead of timing: torch.profiler top ops of these variants"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(build_cases(args.T[0]), args.profile)
        return
    results: dict[str, dict[str, dict[str, Any]]] = {}
    print(
        f"machine: {machine()}; batch {B}, input {I}, hidden {H}, float32, forward+backward, "
        f"{args.clock} clock\n"
    )
    for seq_len in args.T:
        cases = build_cases(seq_len)
        if args.against:
            old = build_cases(seq_len, load_kernels(args.against))
            cases.update({f"{n}@old": f for n, f in old.items() if not n.startswith("nn.")})
        if args.only:
            keep = set(args.only) | {f"{n}@old" for n in args.only}
            cases = {n: f for n, f in cases.items() if n == "nn.GRU" or n in keep}
        results[str(seq_len)] = measure(cases, args.repeats, args.warmup, clock=args.clock)
    names = list(next(iter(results.values())))
    header = "| variant | " + " | ".join(f"T={t} ms | T={t} x nn.GRU" for t in results) + " |"
    print(header)
    print("|---|" + "---:|---:|" * len(results))
    for n in names:
        cells = " | ".join(f"{r[n]['ms']:.1f} | {r[n]['ratio']:.2f}" for r in results.values())
        print(f"| {n} | {cells} |")
    for t, r in results.items():  # each variant against its --against version, round by round
        for n in [n for n in r if f"{n}@old" in r]:
            per = [a / b for a, b in zip(r[n]["round_ms"], r[f"{n}@old"]["round_ms"], strict=True)]
            rounds = " ".join(f"{v:.2f}" for v in per)
            print(f"T={t} {n} new/old: median {statistics.median(per):.3f}, rounds {rounds}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine(),
                    "clock": args.clock,
                    "batch": B,
                    "input": I,
                    "hidden": H,
                    "results": results,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
