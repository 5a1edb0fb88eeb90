"""Reset-after GRU (torch's ``nn.GRU`` equations): kernel and reference loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.kernels.layer_norm import to_nrz, to_rzn
from zoo.cells.kernels.scaffold import (
    ChunkedWeightGrad,
    autograd_loop,
    check_inputs,
    dispatch,
    finish_forward,
    forward_loop,
    grad_of_output,
    repeat_rows,
    reverse_loop,
    tanh_of_half_,
    time_major_inputs,
)


def _update_factors(h_prev: Tensor, n: Tensor, z: Tensor) -> Tensor:
    """``[T, B, 2, H]``: ``d h / d z-pre`` and ``d h / d n-pre`` of ``h = (1 − z) n + z h_prev`` (keep form).

    ``(h_prev − n) z (1 − z)`` and ``(1 − z)(1 − n²)``, written in place: two temporaries for all steps.
    """
    time, batch, hid = n.shape
    q = n.new_empty(time, batch, 2, hid)
    q0, q1 = q[:, :, 0], q[:, :, 1]
    torch.sub(h_prev, n, out=q0).mul_(torch.addcmul(z, z, z, value=-1))
    torch.addcmul(n.new_ones(()), n, n, value=-1, out=q1)
    q1.addcmul_(q1, z, value=-1)
    return q


def _keep(keep: Tensor, q: Tensor, mask: Tensor | None) -> Tensor:
    """Mask the per-step factors ``q`` in place; a padding step's ``keep`` is 1 (gradient passes)."""
    if mask is None:
        return keep
    q.mul_(mask.unsqueeze(-1))
    return torch.where(mask, keep, 1.0)


# -- (a) reset-after GRU (torch / cuDNN form) ---------------------------------------------------------


class _GRUResetAfter(torch.autograd.Function):
    # The backward meets U with its blocks in the order [n, r, z] (rows permuted once per call):
    # then the per-step gradient of ``h U^T + c`` [d gh_n, dr, dz] and the input gradient
    # [dr, dz, dn] share dr, dz, and the input gradient is written straight into its final layout.
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        gi: Tensor,
        h0: Tensor,
        weight_hh: Tensor,
        bias_hh: Tensor | None,
        mask: Tensor | None,
        batch_first: bool,
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = time_major_inputs(batch_first, mask, gi)
        time, batch, three_h = gi_tm.shape
        hid = three_h // 3
        gh = gi.new_empty(time, batch, three_h)  # h U^T + c of every step (its n block is needed backward)
        rz = gi.new_empty(time, batch, 2 * hid)
        n = torch.mul(gi_tm[..., 2 * hid :], 2)  # doubled (see tanh_of_half_); each step adds to it
        u_t = weight_hh.t()
        gi_rz = gi_tm[..., : 2 * hid].unbind(0)
        gh_l, rz_l, n_l = gh.unbind(0), rz.unbind(0), n.unbind(0)
        minus_one = gi.new_full((), -1.0)
        bias_rows = repeat_rows(bias_hh, batch)

        def step(t: int, h: Tensor, out: Tensor) -> None:
            g = gh_l[t]
            if bias_rows is None:
                torch.mm(h, u_t, out=g)
            else:
                torch.addmm(bias_rows, h, u_t, out=g)
            a = rz_l[t]
            torch.add(gi_rz[t], g[:, : 2 * hid], out=a)
            a.sigmoid_()
            nt = n_l[t]
            nt.addcmul_(a[:, :hid], g[:, 2 * hid :], value=2)
            tanh_of_half_(nt, minus_one)
            torch.lerp(nt, h, a[:, hid:], out=out)  # (1 - z) n + z h

        hs = forward_loop(h0, n, mask_tm, step)
        ctx.save_for_backward(weight_hh)
        ctx.has_bias = bias_hh is not None
        return finish_forward(ctx, hs, mask_tm, batch_first, gh, rz, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        (weight_hh,) = ctx.saved_tensors
        hs, mask, gh, rz, n = ctx.buffers
        bf = ctx.batch_first
        time, batch, hid = n.shape
        three_h = 3 * hid
        go = grad_of_output(grad_out, n, mask, bf)
        hp = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        q = _update_factors(hp, n, z)  # d h / d (z-pre, n-pre)
        p = n.new_empty(time, batch, 2, hid)
        p[:, :, 0] = r  # d n-pre / d gh_n
        torch.mul(gh[..., 2 * hid :], torch.addcmul(r, r, r, value=-1), out=p[:, :, 1])  # d n-pre / d r-pre
        keep = _keep(z, q, mask)
        u = to_nrz(weight_hh, hid)
        g_gi = torch.empty(
            (batch, time, three_h) if bf else (time, batch, three_h), dtype=n.dtype, device=n.device
        )
        g_gi_l = (g_gi.transpose(0, 1) if bf else g_gi).unbind(0)
        e = torch.empty(
            batch, 3, hid, dtype=n.dtype, device=n.device
        )  # gradient of h U^T + c, blocks [n, r, z]
        needs = ctx.needs_input_grad
        g_u = hs.new_zeros(three_h, hid) if needs[2] else None
        wgrad = None if g_u is None else ChunkedWeightGrad(g_u, hp)
        e_sum = n.new_zeros(batch, three_h) if ctx.has_bias and needs[3] else None
        q_l, p_l = q.unbind(0), p.unbind(0)

        def step(t: int, dh: Tensor, acc: Tensor) -> None:
            g3 = g_gi_l[t].view(batch, 3, hid)
            torch.mul(dh.unsqueeze(1), q_l[t], out=g3[:, 1:])  # dz, dn
            torch.mul(g3[:, 2:], p_l[t], out=e[:, :2])  # d gh_n, dr
            e[:, 2].copy_(g3[:, 1])
            g3[:, 0].copy_(e[:, 1])
            e_flat = e.view(batch, three_h)
            acc.addmm_(e_flat, u)
            if wgrad is not None:
                wgrad.add(t, e_flat)
            if e_sum is not None:
                e_sum.add_(e_flat)

        dh0 = reverse_loop(go, grad_ht, keep, step)
        if wgrad is not None:
            wgrad.flush()
        return (
            g_gi if needs[0] else None,
            dh0 if needs[1] else None,
            None if g_u is None else to_rzn(g_u, hid),
            None if e_sum is None else to_rzn(e_sum.sum(0), hid),
            None,
            None,
        )


def gru_reset_after_loop(
    gi: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`gru_reset_after` (the fallback and the reference)."""
    mask_tm, (gi_tm,) = time_major_inputs(batch_first, mask, gi)

    def step(h: Tensor, g: Tensor) -> Tensor:
        ghh = torch.nn.functional.linear(h, weight_hh, bias_hh)
        xr, xz, xn = g.chunk(3, -1)
        hr, hz, hn = ghh.chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        nn_ = torch.tanh(xn + r * hn)
        return (1 - z) * nn_ + z * h

    return autograd_loop(step, h0, mask_tm, batch_first, gi_tm)


def gru_reset_after(
    gi: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Reset-after GRU (torch's ``nn.GRU``), keep convention, gate blocks ``r, z, n``.

    ``gh = h U^T + c``; ``r, z = σ(gi_rz + gh_rz)``; ``n = tanh(gi_n + r ⊙ gh_n)``;
    ``h = (1 − z) ⊙ n + z ⊙ h``.

    Args:
        gi: input pre-activations ``x W_ih^T + b_ih``, ``[B, T, 3H]`` (``[T, B, 3H]``).
        h0: initial state ``[B, H]``.
        weight_hh: ``U`` ``[3H, H]`` (``nn.GRU.weight_hh_l0``).
        bias_hh: ``c`` ``[3H]`` or ``None``.
        mask: optional bool step mask ``[B, T, 1]`` (``[T, B, 1]``), true on real steps.
        batch_first: layout of ``gi``, ``mask`` and the output.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    check_inputs(gi, h0, 3, batch_first, mask)
    return dispatch(_GRUResetAfter, gru_reset_after_loop, (gi, h0, weight_hh, bias_hh), mask, batch_first)
