"""Minimal gated unit (Zhou et al. 2016, ``mgu``), write convention: kernel and reference loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels import scaffold
from zoo.cells.kernels.scaffold import (
    autograd_loop,
    check_inputs,
    dispatch,
    finish_forward,
    forward_loop,
    grad_of_output,
    reverse_loop,
    tanh_of_half_,
    time_major,
    time_major_inputs,
)

# -- (c) MGU (Zhou et al. 2016), write convention ------------------------------------------------------


class _MGU(torch.autograd.Function):
    # Blocked in both directions: the input side plus its bias of CHUNK steps at a time goes into small
    # reused buffers, and the backward's factors, keep, gradient slots, f ⊙ h (recomputed) and weight
    # gradients run block by block; only the states, f and h~ are kept for all steps. At long T every
    # other [T, B, H] buffer would be page-faulted in and streamed through memory.
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        gi: Tensor,
        h0: Tensor,
        weight_f: Tensor,
        bias_f: Tensor | None,
        weight_h: Tensor,
        bias_h: Tensor | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = time_major_inputs(mask, gi)
        time, batch, _ = gi_tm.shape
        hid = h0.size(1)
        rows = min(scaffold.CHUNK, time)
        gi_f, gi_h = gi_tm[..., :hid], gi_tm[..., hid:]
        fb = None if bias_f is None else gi.new_empty(rows, batch, hid)
        nb = None if bias_h is None else gi.new_empty(rows, batch, hid)
        f = gi.new_empty(time, batch, hid)
        n = gi.new_empty(time, batch, hid)
        fh = gi.new_empty(batch, hid)
        uf_t, uh_t = weight_f.t(), weight_h.t()
        f_l, n_l = f.unbind(0), n.unbind(0)
        minus_one = gi.new_full((), -1.0)
        cur: list[Any] = [0, (), ()]  # the block's first step and its per-step input sides

        def block(lo: int, hi: int) -> None:
            k = hi - lo
            fs = gi_f[lo:hi] if bias_f is None or fb is None else torch.add(gi_f[lo:hi], bias_f, out=fb[:k])
            ns = gi_h[lo:hi] if bias_h is None or nb is None else torch.add(gi_h[lo:hi], bias_h, out=nb[:k])
            cur[:] = [lo, fs.unbind(0), ns.unbind(0)]

        def step(t: int, h: Tensor, out: Tensor) -> None:
            lo, fs, ns = cur
            ft = f_l[t]
            torch.addmm(fs[t - lo], h, uf_t, out=ft)
            ft.sigmoid_()
            torch.mul(ft, h, out=fh)
            nt = n_l[t]
            torch.addmm(ns[t - lo], fh, uh_t, beta=2, alpha=2, out=nt)  # twice the pre-activation
            tanh_of_half_(nt, minus_one)
            torch.lerp(h, nt, ft, out=out)  # (1 - f) h + f h~

        hs = forward_loop(h0, n, mask_tm, step, block)
        ctx.save_for_backward(weight_f, weight_h)
        ctx.flags = (bias_f is not None, bias_h is not None)
        return finish_forward(ctx, hs, mask_tm, f, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_f, weight_h = ctx.saved_tensors
        hs, mask, f, n = ctx.buffers
        has_bias_f, has_bias_h = ctx.flags
        time, batch, hid = n.shape
        go = grad_of_output(grad_out, n, mask)
        hp = hs[:time]
        needs = ctx.needs_input_grad
        rows = min(scaffold.CHUNK, time)
        q = n.new_empty(rows, batch, 2, hid)  # d h / d [f-pre via the update, candidate-pre]
        a_f2 = n.new_empty(rows, batch, hid)  # d (f h) / d f-pre
        keep = n.new_empty(rows, batch, hid)
        fh = n.new_empty(rows, batch, hid)
        d = n.new_empty(rows, batch, 2, hid)  # slots [df, dn]
        dfh = n.new_empty(batch, hid)
        g_gi = n.new_empty(batch, time, 2 * hid) if needs[0] else None
        g_gi_tm = None if g_gi is None else time_major(g_gi)
        g_uf = n.new_zeros(hid, hid) if needs[2] else None
        g_uh = n.new_zeros(hid, hid) if needs[4] else None
        d_sum = n.new_zeros(2 * hid)
        d_l, q_l, a_l, f_l = d.unbind(0), q.unbind(0), a_f2.unbind(0), f.unbind(0)
        base = [0]

        def chunk(lo: int, hi: int, before: bool) -> None:
            k = hi - lo
            if before:
                base[0] = lo
                f_c, n_c, h_c = f[lo:hi], n[lo:hi], hp[lo:hi]
                s = torch.addcmul(f_c, f_c, f_c, value=-1, out=a_f2[:k])  # σ'
                torch.sub(n_c, h_c, out=q[:k, :, 0]).mul_(s)
                torch.addcmul(n.new_ones(()), n_c, n_c, value=-1, out=q[:k, :, 1]).mul_(f_c)
                s.mul_(h_c)
                torch.neg(f_c, out=keep[:k]).add_(1)
                if g_uh is not None:
                    torch.mul(f_c, h_c, out=fh[:k])
                if mask is not None:  # a padding step: no slot gradient, keep 1 (the gradient passes)
                    m = mask[lo:hi]
                    q[:k].mul_(m.unsqueeze(-1))
                    keep[:k].copy_(torch.where(m, keep[:k], 1.0))
                return
            d_flat = d[:k].view(k * batch, 2 * hid)
            if g_uf is not None:
                g_uf.addmm_(d_flat[:, :hid].t(), hp[lo:hi].reshape(k * batch, hid))
            if g_uh is not None:
                g_uh.addmm_(d_flat[:, hid:].t(), fh[:k].view(k * batch, hid))
            if has_bias_f or has_bias_h:
                d_sum.add_(d_flat.sum(0))
            if g_gi_tm is not None:
                g_gi_tm[lo:hi].copy_(d[:k].view(k, batch, 2 * hid))

        def step(t: int, dh: Tensor, acc: Tensor) -> None:
            i = t - base[0]
            dt = d_l[i]
            torch.mul(dh.unsqueeze(1), q_l[i], out=dt)
            torch.mm(dt[:, 1], weight_h, out=dfh)
            dt[:, 0].addcmul_(dfh, a_l[i])
            acc.addcmul_(dfh, f_l[t])
            acc.addmm_(dt[:, 0], weight_f)

        dh0 = reverse_loop(go, grad_ht, keep, step, chunk, block_keep=True)
        return (
            g_gi,
            dh0 if needs[1] else None,
            g_uf,
            d_sum[:hid] if has_bias_f and needs[3] else None,
            g_uh,
            d_sum[hid:] if has_bias_h and needs[5] else None,
            None,
            None,
        )


def mgu_loop(
    gi: Tensor,
    h0: Tensor,
    weight_f: Tensor,
    bias_f: Tensor | None,
    weight_h: Tensor,
    bias_h: Tensor | None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`mgu` (the fallback and the reference)."""
    hid = h0.size(1)

    def step(h: Tensor, g: Tensor) -> Tensor:
        fg = torch.sigmoid(g[:, :hid] + torch.nn.functional.linear(h, weight_f, bias_f))
        cand = torch.tanh(g[:, hid:] + torch.nn.functional.linear(fg * h, weight_h, bias_h))
        return (1 - fg) * h + fg * cand

    return autograd_loop(step, h0, mask, gi)


def mgu(
    gi: Tensor,
    h0: Tensor,
    weight_f: Tensor,
    bias_f: Tensor | None,
    weight_h: Tensor,
    bias_h: Tensor | None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimal gated unit, write convention: blocks ``f, h`` of ``gi``.

    ``f = σ(gi_f + h U_f^T + b_f)``; ``h~ = tanh(gi_h + (f ⊙ h) U_h^T + b_h)``; ``h = (1 − f) ⊙ h + f ⊙ h~``.

    Args:
        gi: input pre-activations ``[B, T, 2H]``.
        h0: initial state ``[B, H]``.
        weight_f, bias_f: forget gate's recurrent weight ``[H, H]`` and bias (or ``None``).
        weight_h, bias_h: candidate's recurrent weight ``[H, H]`` and bias (or ``None``).
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    check_inputs(gi, h0, 2, mask)
    return dispatch(_MGU, mgu_loop, (gi, h0, weight_f, bias_f, weight_h, bias_h), mask)
