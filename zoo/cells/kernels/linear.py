"""IndRNN and the linear recurrence ``h = a ⊙ h + b`` with minGRU on it: kernels and reference loops."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels import scaffold
from zoo.cells.kernels.scaffold import (
    autograd_loop,
    check_inputs,
    check_pair,
    dispatch,
    finish_forward,
    forward_loop,
    grad_of_output,
    time_major,
    time_major_inputs,
    to_caller_layout,
)

# -- (d) IndRNN (Li et al. 2018) and the linear recurrence h = a ⊙ h + b --------------------------------


def _reverse_linear(go: Tensor, coef: Tensor, grad_ht: Tensor | None) -> Tensor:
    """``g_{t-1} = go_{t-1} + coef_t ⊙ g_t`` from ``g_{T-1} = go_{T-1} + grad_hT``: one op per step."""
    time = go.size(0)
    g = torch.empty_like(go)
    g_l, go_l, c_l = g.unbind(0), go.unbind(0), coef.unbind(0)
    if grad_ht is None:
        g_l[time - 1].copy_(go_l[time - 1])
    else:
        torch.add(go_l[time - 1], grad_ht, out=g_l[time - 1])
    for t in range(time - 1, 0, -1):
        torch.addcmul(go_l[t - 1], g_l[t], c_l[t], out=g_l[t - 1])
    return g


class _IndRNN(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, gi: Tensor, h0: Tensor, weight: Tensor, mask: Tensor | None, batch_first: bool
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = time_major_inputs(batch_first, mask, gi)
        gi_l = gi_tm.unbind(0)

        def step(t: int, h: Tensor, out: Tensor) -> None:
            torch.addcmul(gi_l[t], weight, h, out=out)
            out.relu_()

        hs = forward_loop(h0, gi_tm, mask_tm, step)
        ctx.save_for_backward(weight)
        return finish_forward(ctx, hs, mask_tm, batch_first)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        hs, mask = ctx.buffers
        bf = ctx.batch_first
        time = hs.size(0) - 1
        live = hs[1:] > 0  # ReLU's derivative, from its output
        if mask is not None:
            live &= mask
        active = live.to(hs.dtype)
        coef = active * weight
        if mask is not None:
            coef += (~mask).to(hs.dtype)  # a padding step passes the gradient through
        go = grad_of_output(grad_out, hs[1:], mask, bf)
        g = _reverse_linear(go, coef, grad_ht)
        needs = ctx.needs_input_grad
        g_h0 = g[0] * coef[0] if needs[1] else None
        dpre = g.mul_(active)
        g_gi = to_caller_layout(dpre, bf) if needs[0] else None
        g_w = (dpre * hs[:time]).sum((0, 1)) if needs[2] else None
        return g_gi, g_h0, g_w, None, None


def indrnn_loop(
    gi: Tensor, h0: Tensor, weight: Tensor, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`indrnn` (the fallback and the reference)."""
    mask_tm, (gi_tm,) = time_major_inputs(batch_first, mask, gi)
    return autograd_loop(lambda h, g: torch.relu(g + weight * h), h0, mask_tm, batch_first, gi_tm)


def indrnn(
    gi: Tensor, h0: Tensor, weight: Tensor, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """IndRNN: ``h = ReLU(gi + u ⊙ h)`` with ``gi = x W^T + b`` and ``u`` a vector ``[H]``.

    Args:
        gi: input pre-activations (bias included) ``[B, T, H]``.
        h0: initial state ``[B, H]``.
        weight: recurrent vector ``u`` ``[H]``.
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        batch_first: layout of ``gi``, ``mask`` and the output.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    check_inputs(gi, h0, 1, batch_first, mask)
    return dispatch(_IndRNN, indrnn_loop, (gi, h0, weight), mask, batch_first)


class _LinearRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, a: Tensor, b: Tensor, h0: Tensor | None, mask: Tensor | None, batch_first: bool
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (a_tm, b_tm) = time_major_inputs(batch_first, mask, a, b)
        if mask_tm is not None:
            # a padding step keeps the state: a = 1, b = 0 there
            a_tm = torch.where(mask_tm, a_tm, 1.0)
            b_tm = torch.where(mask_tm, b_tm, 0.0)
        a_l, b_l = a_tm.unbind(0), b_tm.unbind(0)

        def step(t: int, h: Tensor, out: Tensor) -> None:
            torch.addcmul(b_l[t], a_l[t], h, out=out)

        hs = forward_loop(h0, b_tm, None, step)
        return finish_forward(ctx, hs, mask_tm, batch_first, a_tm)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, mask, a_tm = ctx.buffers
        bf = ctx.batch_first
        time = hs.size(0) - 1
        go = grad_of_output(grad_out, hs[1:], mask, bf)
        g = _reverse_linear(go, a_tm, grad_ht)
        needs = ctx.needs_input_grad
        g_h0 = g[0] * a_tm[0] if needs[2] else None
        g_a = g * hs[:time] if needs[0] else None
        if mask is not None:
            g.mul_(mask)
            if g_a is not None:
                g_a.mul_(mask)
        g_b = g if needs[1] else None
        return to_caller_layout(g_a, bf), to_caller_layout(g_b, bf), g_h0, None, None


def linear_recurrence_loop(
    a: Tensor, b: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`linear_recurrence` (the fallback and the reference)."""
    mask_tm, (a_tm, b_tm) = time_major_inputs(batch_first, mask, a, b)
    h = torch.zeros_like(b_tm[0]) if h0 is None else h0
    return autograd_loop(lambda h_, a_t, b_t: a_t * h_ + b_t, h, mask_tm, batch_first, a_tm, b_tm)


def linear_recurrence(
    a: Tensor, b: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` (minGRU: ``a = 1 − z``, ``b = z ⊙ h~``), with a hand-written backward.

    Args:
        a, b: ``[B, T, H]`` (``[T, B, H]`` when not ``batch_first``).
        h0: initial state ``[B, H]`` (zeros when ``None``).
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        batch_first: layout of ``a``, ``b``, ``mask`` and the output.

    Returns:
        ``(output [B, T, H], h_T [B, H])``: every ``h_t`` (zero on padding) and the state after each
        sequence's last real step.
    """
    check_pair(a, b, h0, mask, batch_first, "a", "b")
    return dispatch(_LinearRecurrence, linear_recurrence_loop, (a, b, h0), mask, batch_first)


class _MinGRU(torch.autograd.Function):
    # Blocked in both directions: the gate σ(k) of CHUNK steps at a time goes into a small reused
    # buffer (the backward recomputes it from k, one sigmoid per block), and the backward's
    # recurrence, keep factors and both input gradients run block by block, the gradients written
    # straight into the caller's layout. At long T no [T, B, H] buffer besides the states and the
    # two gradients is allocated (each would be page-faulted in and streamed through memory).
    # With cand None, k is the packed projection [k, h~]: both gradients then go into one buffer in
    # its layout, and no concatenation of the halves' gradients follows (min_gru_packed).
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, k: Tensor, cand: Tensor | None, h0: Tensor | None, mask: Tensor | None, batch_first: bool
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(k, cand)
        if cand is None:
            k, cand = k.chunk(2, dim=-1)
        return _min_gru_forward(ctx, k, cand, h0, mask, batch_first)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        k, cand = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if cand is None:  # packed
            g = k.new_empty(k.shape) if needs[0] else None
            g_k, g_c = (None, None) if g is None else g.chunk(2, dim=-1)
            k, cand = k.chunk(2, dim=-1)
            dh0 = _min_gru_backward(ctx, k, cand, grad_out, grad_ht, g_k, g_c)
            return g, None, dh0 if needs[2] else None, None, None
        g_k = k.new_empty(k.shape) if needs[0] else None
        g_c = cand.new_empty(cand.shape) if needs[1] else None
        dh0 = _min_gru_backward(ctx, k, cand, grad_out, grad_ht, g_k, g_c)
        return g_k, g_c, dh0 if needs[2] else None, None, None


def _min_gru_forward(
    ctx: Any, k: Tensor, cand: Tensor, h0: Tensor | None, mask: Tensor | None, batch_first: bool
) -> tuple[Tensor, Tensor]:
    mask_tm, (k_tm, c_tm) = time_major_inputs(batch_first, mask, k, cand)
    zb = k.new_empty(min(scaffold.CHUNK, c_tm.size(0)), c_tm.size(1), c_tm.size(2))
    c_l, z_l = c_tm.unbind(0), zb.unbind(0)
    base = [0]

    def block(lo: int, hi: int) -> None:
        base[0] = lo
        _min_gru_gate(k_tm, mask_tm, lo, hi, zb)

    def step(t: int, h: Tensor, out: Tensor) -> None:
        torch.lerp(h, c_l[t], z_l[t - base[0]], out=out)  # (1 - z) h + z h~

    hs = forward_loop(h0, c_tm, None, step, block)
    return finish_forward(ctx, hs, mask_tm, batch_first)


def _min_gru_backward(
    ctx: Any,
    k: Tensor,
    cand: Tensor,
    grad_out: Tensor | None,
    grad_ht: Tensor | None,
    g_k: Tensor | None,
    g_c: Tensor | None,
) -> Tensor | None:
    """Writes the gradients of ``k`` and ``cand`` into ``g_k``/``g_c`` (either may be ``None``, any
    strides in the caller's layout); returns that of ``h0``."""
    hs, mask = ctx.buffers
    bf = ctx.batch_first
    time = hs.size(0) - 1
    _, (k_tm, c_tm) = time_major_inputs(bf, None, k, cand)
    go = grad_of_output(grad_out, hs[1:], mask, bf)
    gk_tm, gc_tm = time_major(g_k, bf), time_major(g_c, bf)
    rows = min(scaffold.CHUNK, time)
    zb, kb, gb, tmp = (k.new_empty(rows, hs.size(1), hs.size(2)) for _ in range(4))
    go_l = go.unbind(0)
    # carry = keep_lo ⊙ g_lo of the block after, the recurrent term of g at its last step
    carry = grad_ht
    for hi in range(time, 0, -scaffold.CHUNK):
        lo = max(hi - scaffold.CHUNK, 0)
        n = hi - lo
        z = _min_gru_gate(k_tm, mask, lo, hi, zb)
        keep = torch.neg(z, out=kb[:n]).add_(1)  # 1 on padding (z = 0 there)
        g_l, k_l = gb[:n].unbind(0), keep.unbind(0)
        if carry is None:
            g_l[n - 1].copy_(go_l[hi - 1])
        else:
            torch.add(go_l[hi - 1], carry, out=g_l[n - 1])
        for t in range(hi - 2, lo - 1, -1):
            torch.addcmul(go_l[t], g_l[t + 1 - lo], k_l[t + 1 - lo], out=g_l[t - lo])
        carry = torch.mul(g_l[0], k_l[0])
        g = gb[:n]
        if gk_tm is not None:  # dh/dz times σ'
            t_k = torch.sub(c_tm[lo:hi], hs[lo:hi], out=tmp[:n]).mul_(g).mul_(z)
            torch.mul(t_k, keep, out=gk_tm[lo:hi])
        if gc_tm is not None:
            torch.mul(g, z, out=gc_tm[lo:hi])
    return carry


def _min_gru_gate(k_tm: Tensor, mask: Tensor | None, lo: int, hi: int, out: Tensor) -> Tensor:
    """``σ(k)`` of steps ``lo <= t < hi`` into ``out[:hi - lo]``, zero on padding (the state is kept)."""
    z = torch.sigmoid(k_tm[lo:hi], out=out[: hi - lo])
    return z if mask is None else z.mul_(mask[lo:hi])


def min_gru_loop(
    k: Tensor, cand: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Plain autograd form of :func:`min_gru`: ``linear_recurrence_loop(1 − σ(k), σ(k) ⊙ h~)``."""
    z = torch.sigmoid(k)
    return linear_recurrence_loop(1 - z, z * cand, h0, mask, batch_first=batch_first)


def min_gru(
    k: Tensor, cand: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """minGRU's recurrence from its two projections: ``z = σ(k)``, ``h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h~_t``.

    The gate, the recurrence and their backward in one Function (fewer full-tensor passes than
    ``linear_recurrence(1 − z, z ⊙ h~)`` under autograd).

    Args:
        k: gate pre-activations ``Lin_z(x)``, ``[B, T, H]``.
        cand: candidates ``h~ = Lin_h(x)``, ``[B, T, H]``.
        h0: initial state ``[B, H]`` (zeros when ``None``).
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        batch_first: layout of ``k``, ``cand``, ``mask`` and the output.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    check_pair(k, cand, h0, mask, batch_first, "k", "cand")
    return dispatch(_MinGRU, min_gru_loop, (k, cand, h0), mask, batch_first)


def _min_gru_packed_loop(
    proj: Tensor,
    none: None,
    h0: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    k, cand = proj.chunk(2, dim=-1)
    return min_gru_loop(k, cand, h0, mask, batch_first=batch_first)


def min_gru_packed(
    proj: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """:func:`min_gru` from the packed projection ``[k, h~]`` (``[B, T, 2H]``, e.g. one ``nn.Linear``).

    Same result as ``min_gru(*proj.chunk(2, -1), ...)``; the kernel writes both gradients into one
    buffer in ``proj``'s layout, so no concatenation of the two halves' gradients follows it.
    """
    if proj.dim() != 3 or proj.size(-1) % 2:
        raise ValueError(f"proj must be [B, T, 2H] (or [T, B, 2H]), got {list(proj.shape)}")
    k, cand = proj.chunk(2, dim=-1)
    check_pair(k, cand, h0, mask, batch_first, "k", "cand")
    return dispatch(_MinGRU, _min_gru_packed_loop, (proj, None, h0), mask, batch_first)
