"""Reset-before GRU (Cho et al. 2014 v3, ``gru_cho``) and its gate variants ``gru1/2/3``
(Dey & Salem 2017): kernel and reference loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels import scaffold
from zoo.cells.kernels.policy import kernels_enabled
from zoo.cells.kernels.scaffold import (
    autograd_loop,
    check_inputs,
    finish_forward,
    forward_loop,
    grad_of_output,
    repeat_rows,
    reverse_loop,
    tanh_of_half_,
    time_major,
    time_major_inputs,
)

# -- (b) reset-before GRU (Cho 2014 v3) and its slim variants (Dey & Salem 2017) ----------------------


def _gate_input(gi_g: Tensor | None, bias: Tensor | None, like: Tensor, rows: int) -> Tensor:
    """Input-side part of a gate pre-activation for all steps: ``gi_g + bias`` (either may be absent)."""
    time, batch = like.shape[0], like.shape[1]
    # always a fresh tensor: the callers write into it in place (``sigmoid_``, accumulation). Not
    # ``expand(...).contiguous()``: at B = T = 1 the expanded bias is contiguous already, and that
    # returned the parameter itself.
    if gi_g is None:
        base = like.new_zeros(rows) if bias is None else bias
        return base.expand(time, batch, rows).clone(memory_format=torch.contiguous_format)
    return gi_g + bias if bias is not None else gi_g.clone(memory_format=torch.contiguous_format)


class _GRUResetBefore(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        gi: Tensor,
        h0: Tensor,
        weight_n: Tensor,
        bias_n: Tensor | None,
        weight_gates: Tensor | None,
        bias_gates: Tensor | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = time_major_inputs(mask, gi)
        time, batch, width = gi_tm.shape
        hid = h0.size(1)
        gates_in = width == 3 * hid
        gi_n = gi_tm[..., 2 * hid :] if gates_in else gi_tm
        gates_x = gi_tm[..., : 2 * hid] if gates_in else None
        # input-side terms that the per-step matmuls start from (``out=``, no whole-sequence copy)
        n_in = gi_n if bias_n is None else gi_n + bias_n
        n_in_l = n_in.unbind(0)
        n = gi.new_empty(time, batch, hid)
        if weight_gates is None:  # constant or input-only gates (gru3): finished for all steps here
            rz = _gate_input(gates_x, bias_gates, gi_tm, 2 * hid).sigmoid_()
            g_in: Tensor | None = None
        else:
            rz = gi.new_empty(time, batch, 2 * hid)
            g_in = repeat_rows(bias_gates, batch) if gates_x is None else gates_x
            if gates_x is not None and bias_gates is not None:
                g_in = gates_x + bias_gates
        g_in_l = g_in.unbind(0) if g_in is not None and g_in.dim() == 3 else None
        rh = gi.new_empty(time, batch, hid)
        un_t = weight_n.t()
        ug_t = weight_gates.t() if weight_gates is not None else None
        # per-step views made once (a view costs about as much Python time as a small op)
        rz_l, rh_l, n_l = rz.unbind(0), rh.unbind(0), n.unbind(0)
        r_l, z_l = rz[..., :hid].unbind(0), rz[..., hid:].unbind(0)
        minus_one = gi.new_full((), -1.0)

        def step(t: int, i: int, h: Tensor, out: Tensor) -> None:
            if ug_t is not None:
                a = rz_l[t]
                if g_in is None:
                    torch.mm(h, ug_t, out=a)
                else:
                    torch.addmm(g_in if g_in_l is None else g_in_l[t], h, ug_t, out=a)
                a.sigmoid_()
            rh_t = rh_l[t]
            torch.mul(r_l[t], h, out=rh_t)
            nt = n_l[t]
            torch.addmm(n_in_l[t], rh_t, un_t, beta=2, alpha=2, out=nt)  # twice the pre-activation
            tanh_of_half_(nt, minus_one)
            torch.lerp(nt, h, z_l[t], out=out)

        hs = forward_loop(h0, n, mask_tm, step)
        ctx.save_for_backward(weight_n, weight_gates)
        ctx.flags = (gates_in, bias_n is not None, bias_gates is not None)
        return finish_forward(ctx, hs, mask_tm, rz, rh, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_n, weight_gates = ctx.saved_tensors
        hs, mask, rz, rh, n = ctx.buffers
        gates_in, has_bias_n, has_bias_gates = ctx.flags
        time, batch, hid = n.shape
        d_out = grad_of_output(grad_out, n, mask)
        h_prev = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        keep = z if mask is None else torch.where(mask, z, 1.0)
        needs = ctx.needs_input_grad
        # Blocked: the factors, the slots [dr, dz, dn] and the weight gradients of CHUNK steps at a
        # time live in small buffers reused block after block (in cache, never page-faulted afresh);
        # only the input gradient is a whole-sequence buffer, written in the caller's layout.
        dh_dpre = n.new_empty(scaffold.CHUNK, batch, 2, hid)
        drh_dr_pre = n.new_empty(scaffold.CHUNK, batch, hid)
        d_pre = n.new_empty(scaffold.CHUNK, batch, 3, hid)
        drh = n.new_empty(scaffold.CHUNK, batch, hid)
        width = 3 * hid if gates_in else hid
        d_gi = n.new_empty(batch, time, width) if needs[0] else None
        d_gi_tm = None if d_gi is None else time_major(d_gi)
        d_weight_n = n.new_zeros(hid, hid) if needs[2] else None
        d_weight_gates = n.new_zeros(2 * hid, hid) if weight_gates is not None and needs[4] else None
        d_bias = n.new_zeros(3 * hid)
        dh_dpre_l, drh_l, drh_dr_pre_l = dh_dpre.unbind(0), drh.unbind(0), drh_dr_pre.unbind(0)
        r_l = r.unbind(0)

        def chunk(lo: int, hi: int, before: bool) -> None:
            k = hi - lo
            if before:
                h_c, n_c, z_c, r_c = h_prev[lo:hi], n[lo:hi], z[lo:hi], r[lo:hi]
                dh_dz_pre, dh_dn_pre = dh_dpre[:k, :, 0], dh_dpre[:k, :, 1]
                torch.addcmul(z_c, z_c, z_c, value=-1, out=drh_dr_pre[:k])  # z (1 - z), as scratch
                torch.sub(h_c, n_c, out=dh_dz_pre).mul_(drh_dr_pre[:k])  # d h / d z-pre
                torch.addcmul(n.new_ones(()), n_c, n_c, value=-1, out=dh_dn_pre)
                dh_dn_pre.addcmul_(dh_dn_pre, z_c, value=-1)  # d h / d n-pre = (1 - n²)(1 - z)
                torch.addcmul(r_c, r_c, r_c, value=-1, out=drh_dr_pre[:k]).mul_(h_c)  # d (r h) / d r-pre
                if mask is not None:
                    dh_dpre[:k].mul_(mask[lo:hi].unsqueeze(-1))
                return
            if weight_gates is None:
                torch.mul(drh[:k], drh_dr_pre[:k], out=d_pre[:k, :, 0])
            d_pre_flat = d_pre[:k].view(k * batch, 3 * hid)
            if d_weight_n is not None:
                d_weight_n.addmm_(d_pre_flat[:, 2 * hid :].t(), rh[lo:hi].reshape(k * batch, hid))
            if d_weight_gates is not None:
                d_weight_gates.addmm_(d_pre_flat[:, : 2 * hid].t(), h_prev[lo:hi].reshape(k * batch, hid))
            d_bias.add_(d_pre_flat.sum(0))
            if d_gi_tm is not None:
                d_gi_tm[lo:hi].copy_(d_pre[:k].view(k, batch, 3 * hid) if gates_in else d_pre[:k, :, 2])

        # per-step views of the slots made once (d_pre is reused block after block)
        dzn_l, dn_l, dr_l = d_pre[:, :, 1:].unbind(0), d_pre[:, :, 2].unbind(0), d_pre[:, :, 0].unbind(0)
        drz_l = [v.view(batch, 2 * hid) for v in d_pre[:, :, :2].unbind(0)]

        def step(t: int, i: int, d_h: Tensor, acc: Tensor) -> None:
            drh_i = drh_l[i]
            torch.mul(d_h.unsqueeze(1), dh_dpre_l[i], out=dzn_l[i])
            torch.mm(dn_l[i], weight_n, out=drh_i)
            acc.addcmul_(drh_i, r_l[t])
            if weight_gates is not None:
                torch.mul(drh_i, drh_dr_pre_l[i], out=dr_l[i])
                acc.addmm_(drz_l[i], weight_gates)

        d_h0 = reverse_loop(d_out, grad_ht, keep, step, chunk)
        return (
            d_gi,
            d_h0 if needs[1] else None,
            d_weight_n,
            d_bias[2 * hid :] if has_bias_n and needs[3] else None,
            d_weight_gates,
            d_bias[: 2 * hid] if has_bias_gates and needs[5] else None,
            None,
            None,
        )


def gru_reset_before(
    gi: Tensor,
    h0: Tensor,
    weight_n: Tensor,
    bias_n: Tensor | None = None,
    weight_gates: Tensor | None = None,
    bias_gates: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    reference: bool = False,
) -> tuple[Tensor, Tensor]:
    """Reset-before GRU (``gru_cho``) and its gate variants ``gru1/2/3``, keep convention.

    ``r, z = σ([gi_rz] + [h U_g^T] + [b_g])`` (each term optional); ``n = tanh(gi_n + (r ⊙ h) U_n^T + b_n)``;
    ``h = (1 − z) ⊙ n + z ⊙ h``. ``gru_cho``: ``gi`` ``3H`` wide (blocks ``r, z, n``) with
    ``weight_gates``; ``gru1``: ``gi`` ``H`` wide (``n`` only), ``weight_gates`` and ``bias_gates``;
    ``gru2``: ``weight_gates`` only; ``gru3``: ``bias_gates`` only (constant gates).

    Args:
        gi: input pre-activations, ``[B, T, 3H]`` (gates and candidate) or ``[B, T, H]`` (candidate only).
        h0: initial state ``[B, H]``.
        weight_n: candidate's recurrent weight ``U_n`` ``[H, H]``.
        bias_n: candidate's bias (added once; leave ``None`` if ``gi`` already has it).
        weight_gates: ``U_g`` ``[2H, H]`` (rows ``r, z``) or ``None``.
        bias_gates: gate bias ``[2H]`` or ``None``.
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        reference: run the plain autograd loop of the same equations instead of the kernel (what runs
            where the kernel cannot, and the reference the tests hold the kernel to).

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    hid = h0.size(-1) if h0.dim() == 2 else 0
    check_inputs(gi, h0, 3 if gi.size(-1) == 3 * hid else 1, mask)
    args = (gi, h0, weight_n, bias_n, weight_gates, bias_gates)
    if not reference and kernels_enabled(*args):
        out, h_t = _GRUResetBefore.apply(*args, mask)
        return out, h_t
    gates_in = gi.size(-1) == 3 * hid

    def step(h: Tensor, g: Tensor) -> Tensor:
        pre = g[:, : 2 * hid] if gates_in else torch.zeros_like(g[:, :1]).expand(-1, 2 * hid)
        if weight_gates is not None:
            pre = pre + torch.nn.functional.linear(h, weight_gates)
        if bias_gates is not None:
            pre = pre + bias_gates
        r, z = torch.sigmoid(pre).chunk(2, -1)
        xn = g[:, 2 * hid :] if gates_in else g
        cand = torch.tanh(xn + torch.nn.functional.linear(r * h, weight_n, bias_n))
        return (1 - z) * cand + z * h

    return autograd_loop(step, h0, mask, gi)
