"""The linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` and minGRU on it (``min_gru_packed``).

The cells whose gates see only the input (minGRU, minLSTM: Feng et al. 2024, arXiv:2410.01201) reduce to
this recurrence, so it can run as a loop or as a parallel scan. Heinsen (2023, arXiv:2311.06281) computes
it in log space, ``h = exp(a* + logcumsumexp(log b − a*))`` with ``a* = cumsum(log a)``; that needs
``b > 0`` (or complex logs / a sign split whose two halves cancel) and ``exp(−a*)`` overflows for long
sequences unless handled with care. Here the scan stays in linear space and forms only products of
coefficients, never quotients, so it is exact for ``b`` of any sign and cannot overflow (products of
``a ∈ [0, 1]`` can only underflow to zero, which is their correct limit):

1. split time into ``N`` chunks of ``C`` steps; inside every chunk, all chunks at once, run the recurrence
   from a zero state (``C`` vectorised steps) and take the cumulative product of ``a`` (one ``cumprod``);
2. carry the state across chunk boundaries (``N`` small steps, starting from ``h_0``);
3. add each chunk's incoming state times its cumulative product (one fused multiply-add).

That is about ``C + N ≈ 2√T`` dispatches instead of ``T``. The backward is the same recurrence run
backwards (``δ_t = g_t + a_{t+1} δ_{t+1}``), one hand-written backward for the loop and the scan.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels import scaffold
from zoo.cells.kernels.policy import kernels_enabled
from zoo.cells.kernels.scaffold import (
    autograd_loop,
    check_pair,
    finish_forward,
    forward_loop,
    grad_of_output,
    time_major,
    time_major_inputs,
)

ALGORITHMS = ("loop", "scan")


def _reverse_linear(d_out: Tensor, coef: Tensor, grad_ht: Tensor | None) -> Tensor:
    """The gradient of every state: ``d_{t-1} = d_out_{t-1} + coef_t ⊙ d_t`` from
    ``d_{T-1} = d_out_{T-1} + grad_hT``, one op per step."""
    time = d_out.size(0)
    d_h = torch.empty_like(d_out)
    d_l, d_out_l, coef_l = d_h.unbind(0), d_out.unbind(0), coef.unbind(0)
    if grad_ht is None:
        d_l[time - 1].copy_(d_out_l[time - 1])
    else:
        torch.add(d_out_l[time - 1], grad_ht, out=d_l[time - 1])
    for t in range(time - 1, 0, -1):
        torch.addcmul(d_out_l[t - 1], d_l[t], coef_l[t], out=d_l[t - 1])
    return d_h


def _chunked_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """Every state of ``h_t = a_t ⊙ h_{t-1} + b_t`` on contiguous time-major ``[T, B, H]`` tensors as a
    chunked parallel scan (the module docstring says how)."""
    time = a.size(0)
    chunk = max(8, int(math.sqrt(time)))  # near √T: minimises the C + T/C dispatches
    n = -(-time // chunk)
    pad = n * chunk - time
    if pad:
        # padding steps with a = 1, b = 0 carry the state and are cut off below
        a = torch.cat([a, a.new_ones((pad, *a.shape[1:]))])
        b = torch.cat([b, b.new_zeros((pad, *b.shape[1:]))])
    rest = a.shape[1:]
    a4 = a.reshape(n, chunk, *rest)
    b4 = b.reshape(n, chunk, *rest)
    prod = torch.cumprod(a4, dim=1)  # the product of a within the chunk up to each step
    local = torch.empty_like(b4)
    h = b4[:, 0]
    local[:, 0] = h
    for c in range(1, chunk):
        h = torch.addcmul(b4[:, c], a4[:, c], h, out=local[:, c])
    # the state entering each chunk: n sequential steps over the chunks' ends
    carry = torch.empty((n, *rest), dtype=b.dtype, device=b.device)
    state = h0
    carry[0] = state
    ends_a, ends_h = prod[:, -1], local[:, -1]
    for k in range(1, n):
        state = torch.addcmul(ends_h[k - 1], ends_a[k - 1], state, out=carry[k])
    out = torch.addcmul(local, prod, carry.unsqueeze(1))
    return out.reshape(n * chunk, *rest)[:time]


def _reverse_scan(d_out: Tensor, a_tm: Tensor, grad_ht: Tensor | None) -> Tensor:
    """:func:`_reverse_linear` as a chunked scan: the same recurrence backwards in time, its
    coefficients shifted by one step."""
    a_next = torch.cat([a_tm[1:], a_tm.new_zeros((1, *a_tm.shape[1:]))])
    d_last = d_out.flip(0).contiguous()  # a copy: the final state's gradient goes into its first row
    if grad_ht is not None:
        d_last[0].add_(grad_ht)
    return _chunked_scan(a_next.flip(0).contiguous(), d_last, torch.zeros_like(d_last[0])).flip(0)


class _LinearRecurrence(torch.autograd.Function):
    # One backward for both algorithms: the gradient of every state is the recurrence run backwards,
    # as a loop (one op per step) or as the same chunked scan as the forward.
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, a: Tensor, b: Tensor, h0: Tensor | None, mask: Tensor | None, algorithm: str
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (a_tm, b_tm) = time_major_inputs(mask, a, b)
        if mask_tm is not None:
            # a padding step keeps the state: a = 1, b = 0 there
            a_tm = torch.where(mask_tm, a_tm, 1.0)
            b_tm = torch.where(mask_tm, b_tm, 0.0)
        time = a_tm.size(0)
        ctx.scan = algorithm == "scan" and time > 8  # up to 8 steps the loop is fewer dispatches
        if ctx.scan:
            hs = b_tm.new_empty(time + 1, b_tm.size(1), b_tm.size(2))
            hs[0] = 0.0 if h0 is None else h0
            hs[1:] = _chunked_scan(a_tm.contiguous(), b_tm.contiguous(), hs[0])
        else:
            a_l, b_l = a_tm.unbind(0), b_tm.unbind(0)

            def step(t: int, i: int, h: Tensor, out: Tensor) -> None:
                torch.addcmul(b_l[t], a_l[t], h, out=out)

            hs = forward_loop(h0, b_tm, None, step)
        return finish_forward(ctx, hs, mask_tm, a_tm)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, mask, a_tm = ctx.buffers
        time = hs.size(0) - 1
        d_out = grad_of_output(grad_out, hs[1:], mask)
        # the gradient of every state h_t
        d_h = (_reverse_scan if ctx.scan else _reverse_linear)(d_out, a_tm, grad_ht)
        needs = ctx.needs_input_grad
        d_h0 = d_h[0] * a_tm[0] if needs[2] else None
        d_a = d_h * hs[:time] if needs[0] else None
        if mask is not None:
            d_h.mul_(mask)
            if d_a is not None:
                d_a.mul_(mask)
        d_b = d_h if needs[1] else None
        return (
            None if d_a is None else time_major(d_a),
            None if d_b is None else time_major(d_b),
            d_h0,
            None,
            None,
        )


def linear_recurrence(
    a: Tensor,
    b: Tensor,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    algorithm: str = "loop",
    *,
    reference: bool = False,
) -> tuple[Tensor, Tensor]:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` (minGRU, minLSTM), with a hand-written backward.

    Args:
        a: coefficients ``[B, T, H]``, expected in ``[0, 1]`` (any value computes; ``|a| ≤ 1`` is stable).
        b: inputs ``[B, T, H]``, of any sign.
        h0: initial state ``[B, H]`` (zeros when ``None``).
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        algorithm: ``"loop"`` (one step at a time) or ``"scan"`` (a chunked parallel scan, about
            ``2√T`` dispatches); both have the same backward and agree to rounding.
        reference: run the plain autograd loop of the same equations instead of the kernel (what runs
            where the kernel cannot, and the reference the tests hold the kernel to).

    Returns:
        ``(output [B, T, H], h_T [B, H])``: every ``h_t`` (zero on padding) and the state after each
        sequence's last real step.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    check_pair(a, b, h0, mask, "a", "b")
    if not reference and kernels_enabled(a, b, h0):
        out, h_t = _LinearRecurrence.apply(a, b, h0, mask, algorithm)
        return out, h_t
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    return autograd_loop(lambda h_prev, a_t, b_t: a_t * h_prev + b_t, h, mask, a, b)


class _MinGRU(torch.autograd.Function):
    # minGRU from its packed projection [k, h~]: the gate z = σ(k), the recurrence and their backward in
    # one Function, fewer full-tensor passes than linear_recurrence(1 − z, z ⊙ h~) under autograd.
    # Blocked in both directions: the gate of CHUNK steps at a time goes into a small reused
    # buffer (the backward recomputes it from k, one sigmoid per block), and the backward's
    # recurrence, keep factors and both input gradients run block by block, the gradients written
    # straight into one buffer in the projection's layout (no concatenation of the halves' gradients).
    # At long T no [T, B, H] buffer besides the states and the gradient is allocated (each would be
    # page-faulted in and streamed through memory).
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, proj: Tensor, h0: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(proj)
        mask_tm, (k_tm, cand_tm) = time_major_inputs(mask, *proj.chunk(2, dim=-1))
        z_block = proj.new_empty(min(scaffold.CHUNK, cand_tm.size(0)), cand_tm.size(1), cand_tm.size(2))
        cand_l = cand_tm.unbind(0)

        def block(lo: int, hi: int) -> None:
            _min_gru_gate(k_tm, mask_tm, lo, hi, z_block)

        def step(t: int, i: int, h: Tensor, out: Tensor) -> None:
            torch.lerp(h, cand_l[t], z_block[i], out=out)  # (1 - z) h + z h~

        hs = forward_loop(h0, cand_tm, None, step, block)
        return finish_forward(ctx, hs, mask_tm)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        (proj,) = ctx.saved_tensors
        d_proj = proj.new_empty(proj.shape) if ctx.needs_input_grad[0] else None
        d_h0 = _min_gru_backward(ctx, proj, grad_out, grad_ht, d_proj)
        return d_proj, d_h0 if ctx.needs_input_grad[1] else None, None


def _min_gru_backward(
    ctx: Any, proj: Tensor, grad_out: Tensor | None, grad_ht: Tensor | None, d_proj: Tensor | None
) -> Tensor | None:
    """Writes the gradient of ``proj`` into ``d_proj`` (unless ``None``); returns that of ``h0``."""
    hs, mask = ctx.buffers
    time = hs.size(0) - 1
    _, (k_tm, cand_tm) = time_major_inputs(None, *proj.chunk(2, dim=-1))
    d_out = grad_of_output(grad_out, hs[1:], mask)
    d_k_tm, d_cand_tm = (
        (None, None) if d_proj is None else time_major_inputs(None, *d_proj.chunk(2, dim=-1))[1]
    )
    rows = min(scaffold.CHUNK, time)
    z_block, keep_block, d_h_block, scratch = (proj.new_empty(rows, hs.size(1), hs.size(2)) for _ in range(4))
    d_out_l = d_out.unbind(0)
    # keep_lo ⊙ d_h_lo of the block after: the recurrent term of d_h at this block's last step
    carry = grad_ht
    for hi in range(time, 0, -scaffold.CHUNK):
        lo = max(hi - scaffold.CHUNK, 0)
        n = hi - lo
        z = _min_gru_gate(k_tm, mask, lo, hi, z_block)
        keep = torch.neg(z, out=keep_block[:n]).add_(1)  # 1 on padding (z = 0 there)
        d_h_l, keep_l = d_h_block[:n].unbind(0), keep.unbind(0)
        if carry is None:
            d_h_l[n - 1].copy_(d_out_l[hi - 1])
        else:
            torch.add(d_out_l[hi - 1], carry, out=d_h_l[n - 1])
        for t in range(hi - 2, lo - 1, -1):
            torch.addcmul(d_out_l[t], d_h_l[t + 1 - lo], keep_l[t + 1 - lo], out=d_h_l[t - lo])
        carry = torch.mul(d_h_l[0], keep_l[0])
        d_h = d_h_block[:n]
        if d_k_tm is not None and d_cand_tm is not None:
            # d h / d k = (h~ − h_prev) σ'(k), σ' = z (1 − z)
            d_z = torch.sub(cand_tm[lo:hi], hs[lo:hi], out=scratch[:n]).mul_(d_h).mul_(z)
            torch.mul(d_z, keep, out=d_k_tm[lo:hi])
            torch.mul(d_h, z, out=d_cand_tm[lo:hi])
    return carry


def _min_gru_gate(k_tm: Tensor, mask: Tensor | None, lo: int, hi: int, out: Tensor) -> Tensor:
    """``σ(k)`` of steps ``lo <= t < hi`` into ``out[:hi - lo]``, zero on padding (the state is kept)."""
    z = torch.sigmoid(k_tm[lo:hi], out=out[: hi - lo])
    return z if mask is None else z.mul_(mask[lo:hi])


def min_gru_packed(
    proj: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, reference: bool = False
) -> tuple[Tensor, Tensor]:
    """minGRU's recurrence from its packed projection ``proj = [k, h~]`` (``[B, T, 2H]``, one ``nn.Linear``):
    ``z = σ(k)``, ``h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h~_t``.

    Args:
        proj: gate pre-activations and candidates, ``[B, T, 2H]``.
        h0: initial state ``[B, H]`` (zeros when ``None``).
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        reference: run the plain autograd form instead of the kernel,
            ``linear_recurrence(1 − σ(k), σ(k) ⊙ h~, reference=True)``.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    if proj.dim() != 3 or proj.size(-1) % 2:
        raise ValueError(f"proj must be [B, T, 2H], got {list(proj.shape)}")
    k, cand = proj.chunk(2, dim=-1)
    check_pair(k, cand, h0, mask, "k", "cand")
    if not reference and kernels_enabled(proj, h0):
        out, h_t = _MinGRU.apply(proj, h0, mask)
        return out, h_t
    z = torch.sigmoid(k)
    return linear_recurrence(1 - z, z * cand, h0, mask, reference=True)
