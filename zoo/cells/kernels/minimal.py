"""Minimal gated unit (Zhou et al. 2016, ``mgu``), write convention: kernel and reference loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels import scaffold
from zoo.cells.kernels.policy import kernels_enabled

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
        mask_tm, (gi_tm,) = scaffold.time_major_inputs(mask, gi)
        time, batch, _ = gi_tm.shape
        hid = h0.size(1)
        rows = min(scaffold.CHUNK, time)
        gi_f, gi_h = gi_tm[..., :hid], gi_tm[..., hid:]
        f_block = None if bias_f is None else gi.new_empty(rows, batch, hid)
        n_block = None if bias_h is None else gi.new_empty(rows, batch, hid)
        f = gi.new_empty(time, batch, hid)
        n = gi.new_empty(time, batch, hid)
        fh = gi.new_empty(batch, hid)
        uf_t, uh_t = weight_f.t(), weight_h.t()
        f_l, n_l = f.unbind(0), n.unbind(0)
        minus_one = gi.new_full((), -1.0)
        # the per-step input sides (plus bias) of the block's steps, set by block()
        f_in_l: tuple[Tensor, ...] = ()
        n_in_l: tuple[Tensor, ...] = ()

        def block(lo: int, hi: int) -> None:
            nonlocal f_in_l, n_in_l
            k = hi - lo
            f_in = (
                gi_f[lo:hi]
                if bias_f is None or f_block is None
                else torch.add(gi_f[lo:hi], bias_f, out=f_block[:k])
            )
            n_in = (
                gi_h[lo:hi]
                if bias_h is None or n_block is None
                else torch.add(gi_h[lo:hi], bias_h, out=n_block[:k])
            )
            f_in_l, n_in_l = f_in.unbind(0), n_in.unbind(0)

        def step(t: int, i: int, h: Tensor, out: Tensor) -> None:
            ft = f_l[t]
            torch.addmm(f_in_l[i], h, uf_t, out=ft)
            ft.sigmoid_()
            torch.mul(ft, h, out=fh)
            nt = n_l[t]
            torch.addmm(n_in_l[i], fh, uh_t, beta=2, alpha=2, out=nt)  # twice the pre-activation
            scaffold.tanh_of_half_(nt, minus_one)
            torch.lerp(h, nt, ft, out=out)  # (1 - f) h + f h~

        hs = scaffold.forward_loop(h0, n, mask_tm, step, block)
        ctx.save_for_backward(weight_f, weight_h)
        ctx.flags = (bias_f is not None, bias_h is not None)
        return scaffold.finish_forward(ctx, hs, mask_tm, f, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_f, weight_h = ctx.saved_tensors
        hs, mask, f, n = ctx.buffers
        has_bias_f, has_bias_h = ctx.flags
        time, batch, hid = n.shape
        d_out = scaffold.grad_of_output(grad_out, n, mask)
        h_prev = hs[:time]
        needs = ctx.needs_input_grad
        rows = min(scaffold.CHUNK, time)
        dh_dpre = n.new_empty(rows, batch, 2, hid)  # d h / d [f-pre via the update, candidate-pre]
        dfh_df_pre = n.new_empty(rows, batch, hid)  # d (f h) / d f-pre
        keep = n.new_empty(rows, batch, hid)
        fh = n.new_empty(rows, batch, hid)
        d_pre = n.new_empty(rows, batch, 2, hid)  # slots [df, dn]
        dfh = n.new_empty(batch, hid)
        d_gi = n.new_empty(batch, time, 2 * hid) if needs[0] else None
        d_gi_tm = None if d_gi is None else scaffold.time_major(d_gi)
        d_weight_f = n.new_zeros(hid, hid) if needs[2] else None
        d_weight_h = n.new_zeros(hid, hid) if needs[4] else None
        d_bias = n.new_zeros(2 * hid)
        d_pre_l, dh_dpre_l, dfh_df_pre_l, f_l = (
            d_pre.unbind(0),
            dh_dpre.unbind(0),
            dfh_df_pre.unbind(0),
            f.unbind(0),
        )

        def chunk(lo: int, hi: int, before: bool) -> None:
            k = hi - lo
            if before:
                f_c, n_c, h_c = f[lo:hi], n[lo:hi], h_prev[lo:hi]
                sig_grad = torch.addcmul(f_c, f_c, f_c, value=-1, out=dfh_df_pre[:k])  # σ'
                torch.sub(n_c, h_c, out=dh_dpre[:k, :, 0]).mul_(sig_grad)
                torch.addcmul(n.new_ones(()), n_c, n_c, value=-1, out=dh_dpre[:k, :, 1]).mul_(f_c)
                sig_grad.mul_(h_c)
                torch.neg(f_c, out=keep[:k]).add_(1)
                if d_weight_h is not None:
                    torch.mul(f_c, h_c, out=fh[:k])
                if mask is not None:  # a padding step: no slot gradient, keep 1 (the gradient passes)
                    mask_c = mask[lo:hi]
                    dh_dpre[:k].mul_(mask_c.unsqueeze(-1))
                    keep[:k].copy_(torch.where(mask_c, keep[:k], 1.0))
                return
            d_pre_flat = d_pre[:k].view(k * batch, 2 * hid)
            if d_weight_f is not None:
                d_weight_f.addmm_(d_pre_flat[:, :hid].t(), h_prev[lo:hi].reshape(k * batch, hid))
            if d_weight_h is not None:
                d_weight_h.addmm_(d_pre_flat[:, hid:].t(), fh[:k].view(k * batch, hid))
            if has_bias_f or has_bias_h:
                d_bias.add_(d_pre_flat.sum(0))
            if d_gi_tm is not None:
                d_gi_tm[lo:hi].copy_(d_pre[:k].view(k, batch, 2 * hid))

        def step(t: int, i: int, d_h: Tensor, acc: Tensor) -> None:
            d_pre_t = d_pre_l[i]
            torch.mul(d_h.unsqueeze(1), dh_dpre_l[i], out=d_pre_t)
            torch.mm(d_pre_t[:, 1], weight_h, out=dfh)
            d_pre_t[:, 0].addcmul_(dfh, dfh_df_pre_l[i])
            acc.addcmul_(dfh, f_l[t])
            acc.addmm_(d_pre_t[:, 0], weight_f)

        d_h0 = scaffold.reverse_loop(d_out, grad_ht, keep, step, chunk, block_keep=True)
        return (
            d_gi,
            d_h0 if needs[1] else None,
            d_weight_f,
            d_bias[:hid] if has_bias_f and needs[3] else None,
            d_weight_h,
            d_bias[hid:] if has_bias_h and needs[5] else None,
            None,
            None,
        )


def mgu(
    gi: Tensor,
    h0: Tensor,
    weight_f: Tensor,
    bias_f: Tensor | None,
    weight_h: Tensor,
    bias_h: Tensor | None,
    mask: Tensor | None = None,
    *,
    reference: bool = False,
) -> tuple[Tensor, Tensor]:
    """Minimal gated unit, write convention: blocks ``f, h`` of ``gi``.

    ``f = σ(gi_f + h U_f^T + b_f)``; ``h~ = tanh(gi_h + (f ⊙ h) U_h^T + b_h)``; ``h = (1 − f) ⊙ h + f ⊙ h~``.

    Args:
        gi: input pre-activations ``[B, T, 2H]``.
        h0: initial state ``[B, H]``.
        weight_f, bias_f: forget gate's recurrent weight ``[H, H]`` and bias (or ``None``).
        weight_h, bias_h: candidate's recurrent weight ``[H, H]`` and bias (or ``None``).
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        reference: run the plain autograd loop of the same equations instead of the kernel (what runs
            where the kernel cannot, and the reference the tests hold the kernel to).

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    scaffold.check_inputs(gi, h0, 2, mask)
    args = (gi, h0, weight_f, bias_f, weight_h, bias_h)
    if not reference and kernels_enabled(*args):
        out, h_t = _MGU.apply(*args, mask)
        return out, h_t
    hid = h0.size(1)

    def step(h: Tensor, g: Tensor) -> Tensor:
        fg = torch.sigmoid(g[:, :hid] + torch.nn.functional.linear(h, weight_f, bias_f))
        cand = torch.tanh(g[:, hid:] + torch.nn.functional.linear(fg * h, weight_h, bias_h))
        return (1 - fg) * h + fg * cand

    return scaffold.autograd_loop(step, h0, mask, gi)
