"""Layer-normalised reset-after GRU (haste's ``LayerNormGRU``, ``ln_gru``): kernel and reference loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels import scaffold
from zoo.cells.kernels.policy import kernels_enabled
from zoo.cells.kernels.scaffold import (
    ChunkedWeightGrad,
    autograd_loop,
    check_inputs,
    finish_forward,
    forward_loop,
    grad_of_output,
    reverse_loop,
    tanh_of_half_,
    time_major,
    time_major_inputs,
)

LN_EPS = 1e-5  # F.layer_norm's default, as the layer-norm cells use


# -- (b') layer-normalised reset-after GRU (haste's LayerNormGRU) --------------------------------------
def to_nrz(t: Tensor, hid: int) -> Tensor:
    """Rows (or entries) in blocks ``[r, z, n]`` -> ``[n, r, z]``."""
    return torch.cat([t[2 * hid :], t[: 2 * hid]])


def to_rzn(t: Tensor, hid: int) -> Tensor:
    """Rows (or entries) in blocks ``[n, r, z]`` -> ``[r, z, n]`` (undoes :func:`to_nrz`)."""
    return torch.cat([t[hid:], t[:hid]])


class _LNGRU(torch.autograd.Function):
    # The recurrent norm runs over the blocks in the order [n, r, z] (U, γ and c permuted once per call;
    # a norm over all 3H features does not care about their order): then the backward's per-step
    # norm gradient [d y_n, dr, dz] and the input gradient [dr, dz, dn] share dr, dz, and the input
    # gradient is written straight into its final layout, one step at a time.
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        gi: Tensor,
        h0: Tensor,
        weight_hh: Tensor,
        gamma_hh: Tensor,
        bias_hh: Tensor | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = time_major_inputs(mask, gi)
        time, batch, three_h = gi_tm.shape
        hid = three_h // 3
        norm_shape = (three_h,)
        u_t = to_nrz(weight_hh, hid).t()
        gamma = to_nrz(gamma_hh, hid)
        beta = None if bias_hh is None else to_nrz(bias_hh, hid)
        norm_in = gi.new_empty(time, batch, three_h)  # U h of every step: the norm's input, kept for backward
        rz = gi.new_empty(time, batch, 2 * hid)
        n = gi.new_empty(time, batch, hid)  # doubled (see tanh_of_half_), each step adds to it
        stats: list[tuple[Tensor, Tensor]] = []
        minus_one = gi.new_full((), -1.0)
        gi_rz = gi_tm[..., : 2 * hid].unbind(0)
        norm_in_l, rz_l, n_l = norm_in.unbind(0), rz.unbind(0), n.unbind(0)
        r_l, z_l = rz[..., :hid].unbind(0), rz[..., hid:].unbind(0)

        def step(t: int, i: int, h: Tensor, out: Tensor) -> None:
            norm_in_t = norm_in_l[t]
            torch.mm(h, u_t, out=norm_in_t)
            y, mean, rstd = torch.native_layer_norm(norm_in_t, norm_shape, gamma, beta, LN_EPS)
            stats.append((mean, rstd))
            rz_t = rz_l[t]
            torch.add(gi_rz[t], y[:, hid:], out=rz_t)
            rz_t.sigmoid_()
            n_t = n_l[t]
            n_t.addcmul_(r_l[t], y[:, :hid], value=2)
            tanh_of_half_(n_t, minus_one)
            torch.lerp(n_t, h, z_l[t], out=out)  # (1 - z) n + z h

        def block(lo: int, hi: int) -> None:  # written while the block's steps use it (in cache)
            torch.mul(gi_tm[lo:hi, :, 2 * hid :], 2, out=n[lo:hi])

        hs = forward_loop(h0, n, mask_tm, step, block)
        mean, rstd = (torch.stack(s) for s in zip(*stats, strict=True))
        ctx.save_for_backward(weight_hh, gamma_hh, bias_hh)
        return finish_forward(ctx, hs, mask_tm, norm_in, mean, rstd, rz, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_hh, gamma_hh, bias_hh = ctx.saved_tensors
        hs, mask, norm_in, mean, rstd, rz, n = ctx.buffers
        time, batch, hid = n.shape
        three_h = 3 * hid
        weight_nrz = to_nrz(weight_hh, hid)
        gamma = to_nrz(gamma_hh, hid)
        beta = None if bias_hh is None else to_nrz(bias_hh, hid)
        d_out = grad_of_output(grad_out, n, mask)
        h_prev = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        keep = z if mask is None else torch.where(mask, z, 1.0)
        # the factors that do not depend on the incoming gradient, per block of CHUNK steps into small
        # buffers reused block after block (in cache; whole-sequence ones would be page-faulted in)
        rows = min(scaffold.CHUNK, time)
        dh_dz_pre, dh_dn_pre, dn_dr_pre = (n.new_empty(rows, batch, hid) for _ in range(3))

        def chunk(lo: int, hi: int, before: bool) -> None:
            if not before:
                return
            k = hi - lo
            h_c, n_c, z_c, r_c = h_prev[lo:hi], n[lo:hi], z[lo:hi], r[lo:hi]
            dz_block = torch.sub(h_c, n_c, out=dh_dz_pre[:k]).mul_(z_c)
            dz_block.addcmul_(dz_block, z_c, value=-1)  # d h / d z-pre = (h − n) z (1 − z)
            dn_block = torch.addcmul(n.new_ones(()), n_c, n_c, value=-1, out=dh_dn_pre[:k])
            dn_block.addcmul_(dn_block, z_c, value=-1)  # d h / d n-pre = (1 − n²)(1 − z)
            # y_n, the normalised U_n h + c_n, recomputed from the norm's input and statistics
            dr_block = torch.sub(norm_in[lo:hi, :, :hid], mean[lo:hi], out=dn_dr_pre[:k]).mul_(rstd[lo:hi])
            dr_block.mul_(gamma[:hid])
            if beta is not None:
                dr_block.add_(beta[:hid])
            dr_block.mul_(r_c)
            dr_block.addcmul_(dr_block, r_c, value=-1)  # d n-pre / d r-pre = y_n r (1 − r)
            if mask is not None:
                dz_block.mul_(mask[lo:hi])
                dn_block.mul_(mask[lo:hi])

        # the input gradient [dr, dz, dn] in the caller's layout, written one step at a time
        d_gi = n.new_empty(batch, time, three_h)
        d_gi_l = time_major(d_gi).unbind(0)
        d_norm_out = n.new_empty(batch, 3, hid)  # the norm's output gradient [d y_n, dr, dz]
        d_gain_bias = n.new_zeros(2, three_h)  # gradients of the gain and the bias
        d_weight_hh = hs.new_zeros(three_h, hid) if ctx.needs_input_grad[2] else None
        weight_grad = None if d_weight_hh is None else ChunkedWeightGrad(d_weight_hh, h_prev)
        dh_dz_pre_l, dh_dn_pre_l, dn_dr_pre_l, r_l, norm_in_l = (
            dh_dz_pre.unbind(0),
            dh_dn_pre.unbind(0),
            dn_dr_pre.unbind(0),
            r.unbind(0),
            norm_in.unbind(0),
        )
        mean_l, rstd_l = mean.unbind(0), rstd.unbind(0)
        norm_shape = (three_h,)
        which = (True, True, beta is not None)

        def step(t: int, i: int, d_h: Tensor, acc: Tensor) -> None:
            d_gi_t = d_gi_l[t].view(batch, 3, hid)
            torch.mul(d_h, dh_dz_pre_l[i], out=d_norm_out[:, 2])  # dz
            d_n = torch.mul(d_h, dh_dn_pre_l[i], out=d_gi_t[:, 2])
            torch.mul(d_n, r_l[t], out=d_norm_out[:, 0])  # d y_n
            torch.mul(d_n, dn_dr_pre_l[i], out=d_norm_out[:, 1])  # dr
            d_gi_t[:, :2].copy_(d_norm_out[:, 1:])
            d_norm_in, d_gamma, d_beta = torch.ops.aten.native_layer_norm_backward(
                d_norm_out.view(batch, three_h),
                norm_in_l[t],
                norm_shape,
                mean_l[t],
                rstd_l[t],
                gamma,
                beta,
                which,
            )
            acc.addmm_(d_norm_in, weight_nrz)
            if weight_grad is not None:
                weight_grad.add(t, d_norm_in)
            d_gain_bias[0].add_(d_gamma)
            if d_beta is not None:
                d_gain_bias[1].add_(d_beta)

        d_h0 = reverse_loop(d_out, grad_ht, keep, step, chunk)
        if weight_grad is not None:
            weight_grad.flush()
        needs = ctx.needs_input_grad
        return (
            d_gi if needs[0] else None,
            d_h0 if needs[1] else None,
            None if d_weight_hh is None else to_rzn(d_weight_hh, hid),
            to_rzn(d_gain_bias[0], hid) if needs[3] else None,
            to_rzn(d_gain_bias[1], hid) if beta is not None and needs[4] else None,
            None,
            None,
        )


def ln_gru(
    gi: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    gamma_hh: Tensor,
    bias_hh: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    reference: bool = False,
) -> tuple[Tensor, Tensor]:
    """Reset-after GRU with layer norm on the recurrent pre-activation (haste's ``LayerNormGRU``), keep form.

    ``gh = LN(h U^T; γ) + c`` (one norm over all 3H, eps 1e-5); ``r, z = σ(gi_rz + gh_rz)``;
    ``n = tanh(gi_n + r ⊙ gh_n)``; ``h = (1 − z) ⊙ n + z ⊙ h``. The input side (``LN(W x; γ_x) + b``)
    comes in ``gi``, computed for every step by the caller.

    Args:
        gi: input pre-activations ``[B, T, 3H]`` , blocks ``r, z, n``.
        h0: initial state ``[B, H]``.
        weight_hh: ``U`` ``[3H, H]``.
        gamma_hh: the recurrent norm's gain ``[3H]``.
        bias_hh: ``c`` ``[3H]``, added after the norm, or ``None``.
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        reference: run the plain autograd loop of the same equations instead of the kernel (what runs
            where the kernel cannot, and the reference the tests hold the kernel to).

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    check_inputs(gi, h0, 3, mask)
    args = (gi, h0, weight_hh, gamma_hh, bias_hh)
    if not reference and kernels_enabled(*args):
        out, h_t = _LNGRU.apply(*args, mask)
        return out, h_t
    three_h = gi.size(-1)
    two = 2 * (three_h // 3)

    def step(h: Tensor, g: Tensor) -> Tensor:
        gh = torch.nn.functional.layer_norm(
            torch.nn.functional.linear(h, weight_hh), (three_h,), gamma_hh, bias_hh, LN_EPS
        )
        r, z = torch.sigmoid(g[:, :two] + gh[:, :two]).chunk(2, dim=-1)
        cand = torch.tanh(torch.addcmul(g[:, two:], r, gh[:, two:]))
        return torch.lerp(cand, h, z)

    return autograd_loop(step, h0, mask, gi)
