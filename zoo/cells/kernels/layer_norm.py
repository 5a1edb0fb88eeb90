"""Layer-normalised reset-after GRU (haste's ``LayerNormGRU``, ``ln_gru``): kernel and reference loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels import scaffold
from zoo.cells.kernels.scaffold import (
    ChunkedWeightGrad,
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
        graw = gi.new_empty(time, batch, three_h)  # U h of every step: the norm's input, kept for backward
        rz = gi.new_empty(time, batch, 2 * hid)
        n = gi.new_empty(time, batch, hid)  # doubled (see tanh_of_half_), each step adds to it
        stats: list[tuple[Tensor, Tensor]] = []
        minus_one = gi.new_full((), -1.0)
        gi_rz = gi_tm[..., : 2 * hid].unbind(0)
        graw_l, rz_l, n_l = graw.unbind(0), rz.unbind(0), n.unbind(0)
        r_l, z_l = rz[..., :hid].unbind(0), rz[..., hid:].unbind(0)

        def step(t: int, h: Tensor, out: Tensor) -> None:
            g = graw_l[t]
            torch.mm(h, u_t, out=g)
            y, mean, rstd = torch.native_layer_norm(g, norm_shape, gamma, beta, LN_EPS)
            stats.append((mean, rstd))
            a = rz_l[t]
            torch.add(gi_rz[t], y[:, hid:], out=a)
            a.sigmoid_()
            nt = n_l[t]
            nt.addcmul_(r_l[t], y[:, :hid], value=2)
            tanh_of_half_(nt, minus_one)
            torch.lerp(nt, h, z_l[t], out=out)  # (1 - z) n + z h

        def block(lo: int, hi: int) -> None:  # written while the block's steps use it (in cache)
            torch.mul(gi_tm[lo:hi, :, 2 * hid :], 2, out=n[lo:hi])

        hs = forward_loop(h0, n, mask_tm, step, block)
        mean, rstd = (torch.stack(s) for s in zip(*stats, strict=True))
        ctx.save_for_backward(weight_hh, gamma_hh, bias_hh)
        return finish_forward(ctx, hs, mask_tm, graw, mean, rstd, rz, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_hh, gamma_hh, bias_hh = ctx.saved_tensors
        hs, mask, graw, mean, rstd, rz, n = ctx.buffers
        time, batch, hid = n.shape
        three_h = 3 * hid
        u = to_nrz(weight_hh, hid)
        gamma = to_nrz(gamma_hh, hid)
        beta = None if bias_hh is None else to_nrz(bias_hh, hid)
        go = grad_of_output(grad_out, n, mask)
        hp = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        keep = z if mask is None else torch.where(mask, z, 1.0)
        # the factors that do not depend on the incoming gradient, per block of CHUNK steps into small
        # buffers reused block after block (in cache; whole-sequence ones would be page-faulted in)
        rows = min(scaffold.CHUNK, time)
        q_z, q_n, p_r = (n.new_empty(rows, batch, hid) for _ in range(3))
        base = [0]

        def chunk(lo: int, hi: int, before: bool) -> None:
            if not before:
                return
            k = hi - lo
            base[0] = lo
            h_c, n_c, z_c, r_c = hp[lo:hi], n[lo:hi], z[lo:hi], r[lo:hi]
            qz = torch.sub(h_c, n_c, out=q_z[:k]).mul_(z_c)
            qz.addcmul_(qz, z_c, value=-1)  # d h / d z-pre = (h − n) z (1 − z)
            qn = torch.addcmul(n.new_ones(()), n_c, n_c, value=-1, out=q_n[:k])
            qn.addcmul_(qn, z_c, value=-1)  # d h / d n-pre = (1 − n²)(1 − z)
            # y_n, the normalised U_n h + c_n, recomputed from the norm's input and statistics
            pr = torch.sub(graw[lo:hi, :, :hid], mean[lo:hi], out=p_r[:k]).mul_(rstd[lo:hi])
            pr.mul_(gamma[:hid])
            if beta is not None:
                pr.add_(beta[:hid])
            pr.mul_(r_c)
            pr.addcmul_(pr, r_c, value=-1)  # d n-pre / d r-pre = y_n r (1 − r)
            if mask is not None:
                qz.mul_(mask[lo:hi])
                qn.mul_(mask[lo:hi])

        # the input gradient [dr, dz, dn] in the caller's layout, written one step at a time
        g_gi = n.new_empty(batch, time, three_h)
        g_gi_l = time_major(g_gi).unbind(0)
        dy = torch.empty(
            batch, 3, hid, dtype=n.dtype, device=n.device
        )  # the norm's output gradient [d y_n, dr, dz]
        sums = n.new_zeros(2, three_h)  # gradients of the gain and the bias
        g_u = hs.new_zeros(three_h, hid) if ctx.needs_input_grad[2] else None
        wgrad = None if g_u is None else ChunkedWeightGrad(g_u, hp)
        qz_l, qn_l, pr_l, r_l, graw_l = (
            q_z.unbind(0),
            q_n.unbind(0),
            p_r.unbind(0),
            r.unbind(0),
            graw.unbind(0),
        )
        mean_l, rstd_l = mean.unbind(0), rstd.unbind(0)
        norm_shape = (three_h,)
        which = (True, True, beta is not None)

        def step(t: int, dh: Tensor, acc: Tensor) -> None:
            i = t - base[0]
            g3 = g_gi_l[t].view(batch, 3, hid)
            torch.mul(dh, qz_l[i], out=dy[:, 2])  # dz
            dn = torch.mul(dh, qn_l[i], out=g3[:, 2])
            torch.mul(dn, r_l[t], out=dy[:, 0])  # d y_n
            torch.mul(dn, pr_l[i], out=dy[:, 1])  # dr
            g3[:, :2].copy_(dy[:, 1:])
            dx, d_gamma, d_beta = torch.ops.aten.native_layer_norm_backward(
                dy.view(batch, three_h), graw_l[t], norm_shape, mean_l[t], rstd_l[t], gamma, beta, which
            )
            acc.addmm_(dx, u)
            if wgrad is not None:
                wgrad.add(t, dx)
            sums[0].add_(d_gamma)
            if d_beta is not None:
                sums[1].add_(d_beta)

        dh0 = reverse_loop(go, grad_ht, keep, step, chunk)
        if wgrad is not None:
            wgrad.flush()
        needs = ctx.needs_input_grad
        return (
            g_gi if needs[0] else None,
            dh0 if needs[1] else None,
            None if g_u is None else to_rzn(g_u, hid),
            to_rzn(sums[0], hid) if needs[3] else None,
            to_rzn(sums[1], hid) if beta is not None and needs[4] else None,
            None,
            None,
        )


def ln_gru_loop(
    gi: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    gamma_hh: Tensor,
    bias_hh: Tensor | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`ln_gru` (the fallback and the reference)."""
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


def ln_gru(
    gi: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    gamma_hh: Tensor,
    bias_hh: Tensor | None = None,
    mask: Tensor | None = None,
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

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    check_inputs(gi, h0, 3, mask)
    return dispatch(_LNGRU, ln_gru_loop, (gi, h0, weight_hh, gamma_hh, bias_hh), mask)
