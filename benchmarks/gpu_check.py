"""GPU check for rnn-zoo: CUDA/cuDNN parity of every cell, a bf16 language-model slice, and throughput.

Runs unchanged on any CUDA machine with rnn-zoo installed::

    python benchmarks/gpu_check.py --out gpu_check.md                      # generated tokens
    python benchmarks/gpu_check.py --ptb ../shared/data/ptb --out gpu_check.md   # PTB train split

Sections of the report (printed as markdown and written to ``--out``):

1. Parity: every registered cell on CUDA against the same cell on CPU with copied weights, float32 with
   TF32 off (``torch.backends.cuda.matmul.allow_tf32 = False``, ``torch.backends.cudnn.allow_tf32 =
   False``), with and without ``lengths`` (the fused cells then run packed sequences, i.e. cuDNN's
   variable-length kernel). Outputs, final states and gradients (input and parameters); the largest
   absolute difference, relative to the reference's scale, against a tolerance.
2. A slice of an epoch of a PTB-small-like language model (Zaremba et al. 2014: 2 layers of 200, BPTT 35,
   batch 20, SGD lr 1, clipping 5) under bf16 autocast, for ``gru`` and ``lstm``: the loss is finite and
   falls, on ``zoo.tasks.LanguageModel``.
3. Tokens per second, forward + backward, for ``gru``, ``lstm``, ``min_gru`` and a Python-loop cell
   (``mgu`` when registered) at a few sizes, float32 and bf16 autocast, with the ratio to ``gru``.

Without CUDA the script prints a message and exits 0. ``--cpu-dry-run`` runs every section on the CPU at
tiny sizes instead (parity is then CPU against CPU, so it only proves that the code paths run).

Exit status: 0 when every check passes (or there is no CUDA), 1 when a parity or training check fails.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.batching import stream_rows

FUSED_NAMES = ("rnn_tanh", "rnn_relu", "lstm", "gru")
THROUGHPUT_CELLS = ("gru", "lstm", "min_gru")
LOOP_CANDIDATES = ("mgu", "gru_cho", "li_gru", "ln_gru", "indrnn")
# (batch, time, input, hidden)
THROUGHPUT_SIZES: tuple[tuple[int, int, int, int], ...] = (
    (32, 128, 128, 256),
    (64, 256, 256, 512),
    (128, 512, 512, 1024),
)
DRY_RUN_SIZES: tuple[tuple[int, int, int, int], ...] = ((4, 12, 8, 16),)
# float32, TF32 off: differences come from reduction order only; scaled by max(1, |reference|).
FORWARD_TOL = 1e-4
GRAD_TOL = 1e-3


# -- pure helpers (importable and tested on CPU) ---------------------------------------------------------
def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two tensors or matching nested tuples/lists of tensors."""
    if isinstance(a, Tensor):
        if not isinstance(b, Tensor) or a.shape != b.shape:
            raise ValueError(f"cannot compare {_describe(a)} with {_describe(b)}")
        if a.numel() == 0:
            return 0.0
        return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())
    if isinstance(a, tuple | list) and isinstance(b, tuple | list) and len(a) == len(b):
        return max((max_abs_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    raise ValueError(f"cannot compare {_describe(a)} with {_describe(b)}")


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"tensor{list(x.shape)}"
    if isinstance(x, tuple | list):
        return f"{type(x).__name__} of {len(x)}"
    return type(x).__name__


def max_abs(x: Any) -> float:
    """Largest absolute value in a tensor or nested tuple/list of tensors (0 when empty)."""
    if isinstance(x, Tensor):
        return float(x.detach().abs().max()) if x.numel() else 0.0
    return max((max_abs(v) for v in x), default=0.0)


def scaled_diff(reference: Any, other: Any) -> float:
    """``max|reference - other| / max(1, max|reference|)``: absolute near 0, relative for large values."""
    return max_abs_diff(reference, other) / max(1.0, max_abs(reference))


def verdict(diff: float, tol: float) -> str:
    """``"ok"`` when ``diff`` is finite and within ``tol``, else ``"FAIL"``."""
    return "ok" if math.isfinite(diff) and diff <= tol else "FAIL"


def tokens_per_second(batch: int, time_steps: int, iterations: int, seconds: float) -> float:
    """Tokens (``batch * time_steps`` per iteration) processed per second."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return batch * time_steps * iterations / seconds


def loss_is_falling(losses: Sequence[float], window: int = 10) -> bool:
    """All losses finite and the mean of the last ``window`` below the mean of the first ``window``."""
    if len(losses) < 2 or not all(math.isfinite(v) for v in losses):
        return False
    w = max(1, min(window, len(losses) // 2))
    return sum(losses[-w:]) / w < sum(losses[:w]) / w


def bptt_windows(rows: Tensor, bptt: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``(inputs, targets)`` windows of ``bptt`` steps over ``[batch, n]`` rows, in order; targets shifted."""
    n = rows.size(1) - 1
    for start in range(0, n, bptt):
        end = min(start + bptt, n)
        yield rows[:, start:end], rows[:, start + 1 : end + 1]


def read_ptb(path: str | Path) -> tuple[Tensor, int]:
    """Token ids of the PTB training text (one ``<eos>`` per line) and the vocabulary size.

    ``path`` is ``ptb.train.txt`` or the folder holding it.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "ptb.train.txt"
    if not p.is_file():
        raise FileNotFoundError(f"PTB training file not found: {p} (pass --ptb DIR or --ptb FILE)")
    vocab: dict[str, int] = {}
    ids: list[int] = []
    with p.open(encoding="utf-8") as f:
        for line in f:
            for word in [*line.split(), "<eos>"]:
                ids.append(vocab.setdefault(word, len(vocab)))
    return torch.tensor(ids, dtype=torch.long), len(vocab)


def synthetic_tokens(n: int, vocab_size: int, seed: int = 0, successors: int = 4) -> Tensor:
    """A learnable token stream: a Markov chain where each token has ``successors`` likely next tokens.

    A model that learns the chain approaches ``log(successors)`` nats from the ``log(vocab_size)`` of chance.
    """
    g = torch.Generator().manual_seed(seed)
    table = torch.randint(0, vocab_size, (vocab_size, successors), generator=g)
    choice = torch.randint(0, successors, (n,), generator=g)
    rows, picks = table.tolist(), choice.tolist()
    out, tok = [], 0
    for c in picks:
        tok = rows[tok][c]
        out.append(tok)
    return torch.tensor(out, dtype=torch.long)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats are shown with 3 significant digits."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Section:
    """One part of the report: a title, markdown body lines, and whether its checks passed."""

    title: str
    lines: list[str] = field(default_factory=list)
    passed: bool = True

    def markdown(self) -> str:
        status = "" if self.passed else " (FAILED)"
        return "\n".join([f"## {self.title}{status}", "", *self.lines, ""])


def render_report(header: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole markdown report."""
    ok = all(s.passed for s in sections)
    top = ["# rnn-zoo GPU check", "", *header, "", f"**Overall: {'PASS' if ok else 'FAIL'}**", ""]
    return "\n".join(top + [s.markdown() for s in sections])


# -- the checks -------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, enabled: bool) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def flatten_state(state: Any) -> list[Tensor]:
    """The tensors of a nested state (a tensor, ``(h, c)``, or an encoder's list of per-layer states)."""
    if isinstance(state, Tensor):
        return [state]
    return [t for part in state for t in flatten_state(part)]


def _run_cell(
    layer: nn.Module, x: Tensor, lengths: Tensor | None
) -> tuple[Tensor, Any, Tensor, list[Tensor]]:
    """Forward with ``lengths``, a fixed-weight loss, backward; returns output, state, dx, param grads."""
    x = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    out, state = layer(x, lengths=lengths)
    parts = flatten_state(state)
    # A fixed random weighting makes every output and state entry reach the gradient.
    w = torch.linspace(-1.0, 1.0, out.numel(), device=out.device, dtype=out.dtype).view_as(out)
    loss = (out * w).sum() + sum((p * p).sum() for p in parts)
    loss.backward()
    assert x.grad is not None
    grads = [
        p.grad if p.grad is not None else torch.zeros_like(p) for p in layer.parameters() if p.requires_grad
    ]
    return out, state, x.grad, grads


def check_cell_parity(
    names: Sequence[str], device: torch.device, batch: int = 5, time_steps: int = 23, hidden: int = 32
) -> Section:
    """Every cell on ``device`` against CPU with copied weights, float32, with and without lengths."""
    from zoo import build_cell, get_cell_spec

    section = Section("1. Cell parity: CUDA against CPU (float32, TF32 off)")
    section.lines.append(
        f"Batch {batch}, time {time_steps}, input 16, hidden {hidden}. Differences are "
        f"max|cpu - cuda| / max(1, max|cpu|); tolerance {FORWARD_TOL:g} for outputs and states, "
        f"{GRAD_TOL:g} for gradients. 'lengths' runs variable lengths (packed sequences on the fused cells)."
    )
    section.lines.append("")
    rows: list[list[Any]] = []
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, time_steps, 16, generator=g)
    lengths = torch.tensor([time_steps, 1, time_steps // 2, 7, time_steps - 3][:batch])
    for name in names:
        fused = get_cell_spec(name).fused
        for lens in (None, lengths):
            label = "lengths" if lens is not None else "full"
            try:
                torch.manual_seed(0)
                cpu_layer = build_cell(name, 16, hidden)
                dev_layer = copy.deepcopy(cpu_layer).to(device)
                ref = _run_cell(cpu_layer, x, lens)
                got = _run_cell(dev_layer, x.to(device), lens)
                d_out = scaled_diff(ref[0], got[0])
                d_state = scaled_diff(ref[1], got[1])
                d_grad = max(scaled_diff(ref[2], got[2]), scaled_diff(ref[3], got[3]))
                ok = (
                    verdict(d_out, FORWARD_TOL) == "ok"
                    and verdict(d_state, FORWARD_TOL) == "ok"
                    and verdict(d_grad, GRAD_TOL) == "ok"
                )
                rows.append(
                    [name, "yes" if fused else "no", label, d_out, d_state, d_grad, "ok" if ok else "FAIL"]
                )
                section.passed &= ok
            except Exception as err:
                rows.append([name, "yes" if fused else "no", label, "-", "-", "-", f"ERROR {_short(err)}"])
                section.passed = False
    for name in [n for n in ("gru", "lstm") if n in names]:
        label = "encoder: 2 layers, bidirectional, lengths"
        try:
            from zoo import RecurrentEncoder

            torch.manual_seed(0)
            cpu_enc = RecurrentEncoder(
                cell=name, input_size=16, hidden_size=hidden, num_layers=2, bidirectional=True
            )
            dev_enc = copy.deepcopy(cpu_enc).to(device)
            ref = _run_cell(cpu_enc, x, lengths)
            got = _run_cell(dev_enc, x.to(device), lengths)
            d_out, d_state = scaled_diff(ref[0], got[0]), scaled_diff(ref[1], got[1])
            d_grad = max(scaled_diff(ref[2], got[2]), scaled_diff(ref[3], got[3]))
            ok = max(d_out, d_state) <= FORWARD_TOL and d_grad <= GRAD_TOL
            rows.append([name, "yes", label, d_out, d_state, d_grad, "ok" if ok else "FAIL"])
            section.passed &= ok
        except Exception as err:
            rows.append([name, "yes", label, "-", "-", "-", f"ERROR {_short(err)}"])
            section.passed = False
    section.lines.append(
        markdown_table(
            ["cell", "fused", "lengths", "output diff", "state diff", "grad diff", "verdict"], rows
        )
    )
    return section


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"


def build_language_model(cell: str, vocab_size: int, size: int, layers: int) -> nn.Module:
    """``zoo.tasks.LanguageModel``, ``layers`` layers of ``size`` on ``cell``, tied embedding."""
    from zoo.encoder import EncoderConfig
    from zoo.tasks import LanguageModel

    return LanguageModel(
        EncoderConfig(cell=cell, hidden_size=size, num_layers=layers),
        vocab_size=vocab_size,
        embedding_dim=size,
        dropout=0.0,
    )


def train_lm_slice(
    cell: str,
    stream: Tensor,
    vocab_size: int,
    device: torch.device,
    steps: int,
    size: int = 200,
    layers: int = 2,
    bptt: int = 35,
    batch_size: int = 20,
    bf16: bool = True,
) -> dict[str, Any]:
    """Truncated-BPTT training for ``steps`` windows; SGD lr 1, clip 5 (Zaremba et al. 2014, small)."""
    from zoo.cells import detach_state

    torch.manual_seed(0)
    model = build_language_model(cell, vocab_size, size, layers)
    model = model.to(device).train()
    for p in model.parameters():  # Zaremba et al.: uniform(-0.1, 0.1)
        nn.init.uniform_(p, -0.1, 0.1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rows = stream_rows(stream, batch_size).to(device)
    losses: list[float] = []
    state: Any = None
    tokens = 0
    _sync(device)
    start = time.perf_counter()
    for inputs, targets in bptt_windows(rows, bptt):
        if len(losses) >= steps:
            break
        with _autocast(device, bf16):
            logits, state = model(inputs, state)
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, vocab_size), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        state = detach_state(state)
        losses.append(float(loss.detach()))
        tokens += inputs.numel()
    _sync(device)
    seconds = time.perf_counter() - start
    return {"losses": losses, "tokens": tokens, "seconds": seconds}


def check_lm_slice(device: torch.device, steps: int, ptb: str | None, dry_run: bool) -> Section:
    """Section 2: a bf16 slice of an epoch for gru and lstm."""
    section = Section("2. Language-model slice under bf16 autocast")
    size, bptt, batch = (16, 8, 4) if dry_run else (200, 35, 20)
    if ptb:
        stream, vocab = read_ptb(ptb)
        source = f"PTB train ({stream.numel():,} tokens, {vocab:,} types) from {ptb}"
    else:
        vocab = 20 if dry_run else 10_000
        stream = synthetic_tokens((steps + 1) * bptt * batch + batch, vocab, seed=0)
        source = (
            f"generated Markov-chain tokens ({stream.numel():,} tokens, vocabulary {vocab:,}; "
            f"chance {math.log(vocab):.2f} nats)"
        )
    section.lines += [
        f"Data: {source}. Model: 2 layers of {size}, BPTT {bptt}, batch {batch}, SGD lr 1, clip 5, "
        f"{steps} steps, `torch.autocast(bfloat16)`.",
        "",
    ]
    rows: list[list[Any]] = []
    for cell in ("gru", "lstm"):
        try:
            r = train_lm_slice(
                cell, stream, vocab, device, steps, size=size, bptt=bptt, batch_size=batch, bf16=True
            )
            losses = r["losses"]
            w = max(1, min(10, len(losses) // 2))
            ok = loss_is_falling(losses)
            section.passed &= ok
            rows.append(
                [
                    cell,
                    len(losses),
                    sum(losses[:w]) / w,
                    sum(losses[-w:]) / w,
                    f"{r['tokens'] / r['seconds']:,.0f}",
                    "ok" if ok else "FAIL (not finite or not falling)",
                ]
            )
        except Exception as err:
            traceback.print_exc()
            rows.append([cell, 0, "-", "-", "-", f"ERROR {_short(err)}"])
            section.passed = False
    section.lines.append(
        markdown_table(["cell", "steps", "loss (first 10)", "loss (last 10)", "tokens/s", "verdict"], rows)
    )
    return section


def time_forward_backward(layer: nn.Module, x: Tensor, bf16: bool, iterations: int, warmup: int = 2) -> float:
    """Seconds for ``iterations`` forward + backward passes (after ``warmup``), synchronised."""
    device = x.device

    def one() -> None:
        with _autocast(device, bf16):
            out, _ = layer(x)
        out.float().sum().backward()

    for _ in range(warmup):
        one()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        one()
    _sync(device)
    return time.perf_counter() - start


def pick_loop_cell(available: Sequence[str], spec_of: Callable[[str], Any]) -> str | None:
    """The first registered Python-loop cell (neither fused nor a parallel scan) among the candidates."""
    for name in [*LOOP_CANDIDATES, *sorted(available)]:
        if name in available:
            spec = spec_of(name)
            if not spec.fused and not spec.parallel:
                return name
    return None


def check_throughput(
    device: torch.device, sizes: Sequence[tuple[int, int, int, int]], iterations: int
) -> Section:
    """Section 3: tokens per second, forward + backward, float32 and bf16 autocast; ratio to gru."""
    from zoo import build_cell, get_cell_spec, list_cells

    section = Section("3. Throughput: forward + backward, tokens per second")
    available = list_cells()
    cells = [c for c in THROUGHPUT_CELLS if c in available]
    missing = [c for c in THROUGHPUT_CELLS if c not in available]
    loop = pick_loop_cell(available, get_cell_spec)
    if loop is not None:
        cells.append(loop)
    note = f" Not registered here: {', '.join(missing)}." if missing else ""
    section.lines += [
        f"One layer, {iterations} timed iterations after 2 warm-up; x requires no grad; the loss is "
        f"out.sum(). Ratio: tokens/s of `gru` at the same size and precision divided by the cell's "
        f"(1.0 = as fast as `gru`, above 1 = slower). Python-loop cell: {loop or 'none registered'}.{note}",
        "",
    ]
    rows: list[list[Any]] = []
    for b, t, i, h in sizes:
        for bf16 in (False, True):
            base: float | None = None
            for name in cells:
                precision = "bf16 autocast" if bf16 else "float32"
                try:
                    torch.manual_seed(0)
                    layer = build_cell(name, i, h).to(device)
                    x = torch.randn(b, t, i, device=device)
                    secs = time_forward_backward(layer, x, bf16, iterations)
                    tps = tokens_per_second(b, t, iterations, secs)
                    if name == "gru":
                        base = tps
                    ratio = f"{base / tps:.2f}" if base else "-"
                    rows.append([f"B{b} T{t} I{i} H{h}", precision, name, f"{tps:,.0f}", ratio])
                except Exception as err:
                    rows.append([f"B{b} T{t} I{i} H{h}", precision, name, f"ERROR {_short(err)}", "-"])
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    section.lines.append(markdown_table(["size", "precision", "cell", "tokens/s", "time vs gru"], rows))
    return section


def environment_lines(device: torch.device) -> list[str]:
    """Machine, library versions and backend flags."""
    import zoo

    lines = [
        f"- torch {torch.__version__}, rnn-zoo {zoo.__version__}, Python {platform.python_version()}",
        f"- device: {device}",
    ]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines += [
            f"- GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
            f"{props.major}.{props.minor}; CUDA {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()} "
            f"(enabled: {torch.backends.cudnn.enabled})",
            f"- TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32: "
            f"{torch.backends.cudnn.allow_tf32} (parity runs with both off)",
        ]
    else:
        lines.append("- CPU dry run: parity compares CPU with CPU; numbers say only that the code paths run")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", default="gpu_check.md", help="markdown report path (default: gpu_check.md)")
    p.add_argument("--ptb", default=None, help="PTB folder or ptb.train.txt; default: generated tokens")
    p.add_argument("--steps", type=int, default=200, help="language-model steps (default: 200)")
    p.add_argument("--iterations", type=int, default=10, help="timed iterations per throughput row")
    p.add_argument("--quick", action="store_true", help="smallest throughput size only")
    p.add_argument("--skip", nargs="*", default=[], choices=["parity", "lm", "throughput"])
    p.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="no CUDA needed: run every section on the CPU at tiny sizes (tests the script itself)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks; 0 when all pass or when there is no CUDA device, else 1."""
    args = parse_args(argv)
    if args.cpu_dry_run:
        device = torch.device("cpu")
        # At these tiny sizes a thread pool only adds overhead (and stalls on a busy machine).
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device available (torch.cuda.is_available() is False); nothing to check. "
            "Run this on a machine with an NVIDIA GPU and a CUDA build of torch, or pass --cpu-dry-run "
            "to exercise the script on the CPU."
        )
        return 0
    else:
        device = torch.device("cuda")
        # Parity must compare float32 with float32: TF32 would change the results by ~1e-3.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False

    from zoo import list_cells

    names = list_cells()
    ordered = [n for n in FUSED_NAMES if n in names] + [n for n in names if n not in FUSED_NAMES]
    sections: list[Section] = []
    started = time.perf_counter()
    if "parity" not in args.skip:
        small = dict(batch=3, time_steps=9, hidden=8) if args.cpu_dry_run else {}
        sections.append(check_cell_parity(ordered, device, **small))
    if "lm" not in args.skip:
        steps = min(args.steps, 30) if args.cpu_dry_run else args.steps
        sections.append(check_lm_slice(device, steps, args.ptb, args.cpu_dry_run))
    if "throughput" not in args.skip:
        sizes = (
            DRY_RUN_SIZES if args.cpu_dry_run else THROUGHPUT_SIZES[:1] if args.quick else THROUGHPUT_SIZES
        )
        iterations = 2 if args.cpu_dry_run else args.iterations
        sections.append(check_throughput(device, sizes, iterations))
    header = [*environment_lines(device), f"- total time: {time.perf_counter() - started:.1f} s"]
    report = render_report(header, sections)
    print(report)
    Path(args.out).write_text(report, encoding="utf-8")
    print(f"\nreport written to {args.out}")
    return 0 if all(s.passed for s in sections) else 1


if __name__ == "__main__":
    sys.exit(main())
