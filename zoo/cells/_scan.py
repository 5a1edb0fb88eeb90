"""Linear recurrences ``h_t = a_t ⊙ h_{t-1} + b_t`` over time, sequentially or as a chunked parallel scan.

The cells whose gates see only the input (minGRU, minLSTM: Feng et al. 2024, arXiv:2410.01201) reduce to
this recurrence, so they can train without a step-by-step loop. Heinsen (2023, arXiv:2311.06281) computes
it in log space, ``h = exp(a* + logcumsumexp(log b − a*))`` with ``a* = cumsum(log a)``; that needs
``b > 0`` (or complex logs / a sign split whose two halves cancel) and ``exp(−a*)`` overflows for long
sequences unless handled with care. Here the scan stays in linear space and forms only products of
coefficients, never quotients, so it is exact for ``b`` of any sign and cannot overflow (products of
``a ∈ [0, 1]`` can only underflow to zero, which is their correct limit):

1. split time into ``N`` chunks of ``C`` steps; inside every chunk, all chunks at once, run the recurrence
   from a zero state (``C`` vectorised steps) and take the cumulative product of ``a`` (one ``cumprod``);
2. carry the state across chunk boundaries (``N`` small steps, starting from ``h_0``);
3. add each chunk's incoming state times its cumulative product (one fused multiply-add).

That is about ``C + N ≈ 2√T`` dispatches instead of ``T``. The backward pass is the same recurrence run
backwards (``δ_t = g_t + a_{t+1} δ_{t+1}``), so it is written by hand in :class:`_LinearScan` and reuses
the forward kernels; autograd never records a per-step graph.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MODES = ("auto", "scan", "loop")


def _loop_tm(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """Sequential recurrence on time-major ``[T, B, H]`` tensors; returns every ``h_t``."""
    out = torch.empty_like(b)
    h = h0
    for a_t, b_t, o_t in zip(a.unbind(0), b.unbind(0), out.unbind(0), strict=True):
        h = torch.addcmul(b_t, a_t, h, out=o_t)
    return out


def _chunked_tm(a: Tensor, b: Tensor, h0: Tensor, chunk: int) -> Tensor:
    """Chunked scan on time-major ``[T, B, H]`` tensors (see the module docstring); returns every ``h_t``."""
    time = a.size(0)
    n = -(-time // chunk)
    pad = n * chunk - time
    if pad:
        # padding steps with a = 1, b = 0 carry the state and are cut off below
        a = torch.cat([a, a.new_ones((pad, *a.shape[1:]))])
        b = torch.cat([b, b.new_zeros((pad, *b.shape[1:]))])
    rest = a.shape[1:]
    a4 = a.reshape(n, chunk, *rest)
    b4 = b.reshape(n, chunk, *rest)
    prod = torch.cumprod(a4, dim=1)  # A_t: product of a within the chunk up to t
    local = torch.empty_like(b4)
    h = b4[:, 0]
    local[:, 0] = h
    for c in range(1, chunk):
        h = torch.addcmul(b4[:, c], a4[:, c], h, out=local[:, c])
    # state entering each chunk: N sequential steps over chunk ends
    carry = torch.empty((n, *rest), dtype=b.dtype, device=b.device)
    s = h0
    carry[0] = s
    ends_a, ends_h = prod[:, -1], local[:, -1]
    for k in range(1, n):
        s = torch.addcmul(ends_h[k - 1], ends_a[k - 1], s, out=carry[k])
    out = torch.addcmul(local, prod, carry.unsqueeze(1))
    return out.reshape(n * chunk, *rest)[:time]


def default_chunk(time: int) -> int:
    """Chunk length near ``√T`` (minimises ``C + T/C`` dispatches), at least 8."""
    return max(8, int(math.sqrt(time)))


def _kernel(a: Tensor, b: Tensor, h0: Tensor, algorithm: str) -> Tensor:
    if algorithm == "loop" or a.size(0) <= 8:
        return _loop_tm(a, b, h0)
    return _chunked_tm(a, b, h0, default_chunk(a.size(0)))


class _LinearScan(torch.autograd.Function):
    """``h_t = a_t h_{t-1} + b_t`` on time-major tensors, with a hand-written backward (a reverse scan)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, algorithm: str) -> Tensor:  # type: ignore[override]
        h = _kernel(a, b, h0, algorithm)
        ctx.save_for_backward(a, h, h0)
        ctx.algorithm = algorithm
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        # δ_t = g_t + a_{t+1} δ_{t+1}: the same recurrence backwards in time, coefficients shifted by one
        a_next = torch.cat([a[1:], a.new_zeros((1, *a.shape[1:]))])
        delta = _kernel(a_next.flip(0), grad_h.flip(0), torch.zeros_like(h0), ctx.algorithm).flip(0)
        h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])
        grad_a = delta * h_prev if ctx.needs_input_grad[0] else None
        grad_h0 = a[0] * delta[0] if ctx.needs_input_grad[2] else None
        return grad_a, delta, grad_h0, None


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, algorithm: str = "scan") -> Tensor:
    """All states of ``h_t = a_t ⊙ h_{t-1} + b_t`` for batch-first ``a``, ``b`` ``[B, T, H]``.

    Args:
        a: coefficients, expected in ``[0, 1]`` (any real value computes, but only ``|a| ≤ 1`` is stable).
        b: inputs of any sign.
        h0: state before the first step, ``[B, H]``.
        algorithm: ``"scan"`` (chunked parallel scan) or ``"loop"`` (one step at a time); both have the
            hand-written backward and agree to rounding.

    Returns:
        ``h`` ``[B, T, H]``; ``h[:, -1]`` is the final state.
    """
    if algorithm not in ("scan", "loop"):
        raise ValueError(f"algorithm must be 'scan' or 'loop', got {algorithm!r}")
    a_tm = a.transpose(0, 1).contiguous()
    b_tm = b.transpose(0, 1).contiguous()
    h = _LinearScan.apply(a_tm, b_tm, h0.contiguous(), algorithm)
    return h.transpose(0, 1)
