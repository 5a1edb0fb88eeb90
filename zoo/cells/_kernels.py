"""Hand-written forward/backward kernels for the GRU family on CPU.

Each recurrence is a ``torch.autograd.Function`` whose forward runs the time loop doing only the
per-step recurrent matmul and element-wise math into preallocated buffers (no autograd nodes per
step), and whose backward is written by hand: a reverse-time loop for the recurrent part, then the
recurrent weight gradient as ONE matmul over all time steps. The input projections are computed by
the caller for every step at once, so their gradients (``W``, ``x``) are one matmul each as well.
Factors of the backward that do not depend on the incoming gradient (sigmoid/tanh derivatives,
masks) are computed once for all steps, vectorised, so the reverse loop is 2 to 6 ops per step.

Conventions shared by every kernel:

- ``gi`` holds the input-side pre-activations for every step (``x W^T + b``), ``[B, T, k*H]`` when
  ``batch_first`` (the default) or ``[T, B, k*H]``; blocks are in the order the docstring names.
- ``h0`` is ``[B, H]``; recurrent weights are ``[rows, H]`` as in ``nn.Linear`` (``h @ U^T``).
- ``mask`` (optional) is boolean ``[B, T, 1]`` (``[T, B, 1]`` when not ``batch_first``), true on real
  steps: a padding step keeps the state and outputs zero (``zoo.cells.base.step_mask`` builds it).
- Every function returns ``(output, h_T)``: ``output`` ``[B, T, H]`` (``[T, B, H]``), contiguous, and
  the state after each sequence's last real step.

Each public function dispatches: the kernel when :func:`kernels_enabled` says so (CPU, float32 or
float64, no ``torch.func`` transform, not being compiled or scripted), else a plain autograd loop of the
same equations (``*_loop``), which also serves as the reference. The kernels' backward is not itself
differentiable: for double backward (``gradgradcheck``, some meta-learning) turn them off with
``use_kernels(False)`` or ``ZOO_KERNELS=0``. ``torch.func.functional_call`` works with them.

A ``LoopLayer`` uses one in its ``_forward`` (``forward_with_gates`` keeps the step loop)::

    def _forward(self, x, state, lengths):
        if not kernels_enabled(x, state, *self.parameters()):
            return super()._forward(x, state, lengths)
        h0 = state if state is not None else x.new_zeros(x.size(0), self.hidden_size)
        mask = None if lengths is None else step_mask(lengths, x.size(1), x.device)
        return mgu(self.project(x), h0, u_f, c_f, u_h, c_h, mask)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "gru_reset_after",
    "gru_reset_after_loop",
    "gru_reset_before",
    "gru_reset_before_loop",
    "indrnn",
    "indrnn_loop",
    "kernels_enabled",
    "linear_recurrence",
    "linear_recurrence_loop",
    "mgu",
    "mgu_loop",
    "min_gru",
    "min_gru_loop",
    "use_kernels",
]

_ENABLED = os.environ.get("ZOO_KERNELS", "1") != "0"
# Where the kernels were measured faster than the autograd loop and checked against it: on an H200 they
# took 0.6x the loop's time (gru1 6.2 vs 10.0 ms, mgu 5.8 vs 9.1 at T=128; docs/benchmarks.md).
# ZOO_KERNELS=all also allows any other device.
_DEVICES = ("cpu", "cuda")
_ANY_DEVICE = os.environ.get("ZOO_KERNELS", "1") == "all"
_DTYPES = (torch.float32, torch.float64)


@contextlib.contextmanager
def use_kernels(enabled: bool) -> Iterator[None]:
    """Turn the hand-written kernels on or off inside a ``with`` block (e.g. off for double backward)."""
    global _ENABLED
    old, _ENABLED = _ENABLED, enabled
    try:
        yield
    finally:
        _ENABLED = old


def _functorch_wrapped(t: Tensor) -> bool:
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))
    except AttributeError:  # pragma: no cover - older torch
        return False


def kernels_enabled(*tensors: Tensor | None) -> bool:
    """Whether the hand-written kernels can run on these tensors.

    True on CPU and CUDA for float32/float64 tensors outside ``torch.func`` transforms (vmap/grad/jvp),
    TorchScript and ``torch.compile``, unless turned off by :func:`use_kernels` or ``ZOO_KERNELS=0``.
    ``ZOO_KERNELS=all`` allows any device.
    """
    if not _ENABLED or torch.jit.is_scripting():
        return False
    if torch.compiler.is_compiling():
        return False
    for t in tensors:
        if t is None:
            continue
        if t.device.type not in _DEVICES and not _ANY_DEVICE:
            return False
        if t.dtype not in _DTYPES or _functorch_wrapped(t):
            return False
    return True


# -- helpers -----------------------------------------------------------------------------------------


def _time_major(t: Tensor | None, batch_first: bool) -> Tensor | None:
    if t is None:
        return None
    return t.transpose(0, 1) if batch_first else t


def _output(hs: Tensor, mask: Tensor | None, batch_first: bool) -> Tensor:
    """``[T, B, H]`` states -> the layer output in the caller's layout (own storage), zero on padding."""
    src, m = (
        (hs.transpose(0, 1), None if mask is None else mask.transpose(0, 1)) if batch_first else (hs, mask)
    )
    out = torch.empty(src.shape, dtype=hs.dtype, device=hs.device)
    # a copy, so an in-place edit of the output cannot corrupt the states saved for backward
    if m is None:
        out.copy_(src)
    else:
        torch.mul(src, m, out=out)
    return out


def _grad_out(grad: Tensor | None, like: Tensor, mask: Tensor | None, batch_first: bool) -> Tensor:
    """Incoming output gradient as a contiguous ``[T, B, H]`` tensor, zero on padding."""
    if grad is None:
        return torch.zeros_like(like)
    g = grad.transpose(0, 1) if batch_first else grad
    g = g * mask if mask is not None else g.contiguous()
    return g


def _grad_in(d_tm: Tensor, batch_first: bool) -> Tensor:
    return d_tm.transpose(0, 1) if batch_first else d_tm


def _check(gi: Tensor, h0: Tensor, blocks: int, batch_first: bool, mask: Tensor | None) -> None:
    if gi.dim() != 3 or h0.dim() != 2:
        raise ValueError(f"gi must be 3-d and h0 2-d, got {list(gi.shape)} and {list(h0.shape)}")
    b, t = (gi.size(0), gi.size(1)) if batch_first else (gi.size(1), gi.size(0))
    h = h0.size(1)
    if gi.size(2) != blocks * h or h0.size(0) != b:
        raise ValueError(
            f"gi must be [{'B, T' if batch_first else 'T, B'}, {blocks}*H] and h0 [B, H]; got gi "
            f"{list(gi.shape)} with h0 {list(h0.shape)}"
        )
    if mask is not None:
        want = (b, t, 1) if batch_first else (t, b, 1)
        if tuple(mask.shape) != want or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {list(want)}, got {mask.dtype} {list(mask.shape)}"
            )


# -- (a) reset-after GRU (torch / cuDNN form) ---------------------------------------------------------


class _GRUResetAfter(torch.autograd.Function):
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
        gi_tm = _time_major(gi, batch_first)
        mask_tm = _time_major(mask, batch_first)
        assert gi_tm is not None
        time, batch, three_h = gi_tm.shape
        hid = three_h // 3
        hs = gi.new_empty(time + 1, batch, hid)
        hs[0] = h0
        # gh[t] = [gi_rz + U_rz h + c_rz | U_n h + c_n]: the biases (and gi_rz) are written for all
        # steps at once, so each step is an in-place addmm (its n block is needed backward)
        gh = gi.new_empty(time, batch, three_h)
        if bias_hh is not None:
            torch.add(gi_tm[..., : 2 * hid], bias_hh[: 2 * hid], out=gh[..., : 2 * hid])
            gh[..., 2 * hid :] = bias_hh[2 * hid :]
        else:
            gh[..., : 2 * hid] = gi_tm[..., : 2 * hid]
            gh[..., 2 * hid :] = 0
        rz = gi.new_empty(time, batch, 2 * hid)
        n = gi.new_empty(time, batch, hid)
        u_t = weight_hh.t()
        gi_n = gi_tm[..., 2 * hid :].unbind(0)
        gh_l, rz_l, n_l, hs_l = gh.unbind(0), rz.unbind(0), n.unbind(0), hs.unbind(0)
        masks = mask_tm.unbind(0) if mask_tm is not None else None
        for t in range(time):
            h = hs_l[t]
            g = gh_l[t]
            g.addmm_(h, u_t)
            a = rz_l[t]
            torch.sigmoid(g[:, : 2 * hid], out=a)
            nt = n_l[t]
            torch.addcmul(gi_n[t], a[:, :hid], g[:, 2 * hid :], out=nt)
            nt.tanh_()
            torch.lerp(nt, h, a[:, hid:], out=hs_l[t + 1])  # (1 - z) n + z h
            if masks is not None:
                torch.where(masks[t], hs_l[t + 1], h, out=hs_l[t + 1])
        ctx.save_for_backward(weight_hh)
        ctx.buffers = (hs, gh, rz, n, mask_tm)
        ctx.batch_first = batch_first
        ctx.has_bias = bias_hh is not None
        return _output(hs[1:], mask_tm, batch_first), hs[time].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        (weight_hh,) = ctx.saved_tensors
        hs, gh, rz, n, mask = ctx.buffers
        bf = ctx.batch_first
        time, batch, hid = n.shape
        go = _grad_out(grad_out, n, mask, bf)
        hp = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        # everything that does not depend on the incoming gradient, for all steps at once
        q = n.new_empty((time, batch, 2, hid))
        torch.mul(hp - n, z * (1 - z), out=q[:, :, 0])  # d h / d z-pre-activation
        torch.mul(1 - z, 1 - n * n, out=q[:, :, 1])  # d h / d n-pre-activation
        p = n.new_empty((time, batch, 2, hid))
        torch.mul(gh[..., 2 * hid :], r * (1 - r), out=p[:, :, 0])  # d n-pre / d r-pre
        p[:, :, 1] = r  # d n-pre / d (U_n h + c_n)
        if mask is not None:
            q.mul_(mask.unsqueeze(-1))
            z = torch.where(mask, z, 1.0)  # a padding step passes the gradient through unchanged
        # per-step gradient slots [dr, d(U_n h), dz, dn]; the first three meet U with rows (r, n, z)
        d = n.new_empty((time, batch, 4, hid))
        u = weight_hh
        u_perm = torch.cat([u[:hid], u[2 * hid :], u[hid : 2 * hid]])
        dh = go[time - 1] if grad_ht is None else go[time - 1] + grad_ht
        bufs = (torch.empty_like(dh), torch.empty_like(dh))
        d_l, q_l, p_l, z_l, go_l = d.unbind(0), q.unbind(0), p.unbind(0), z.unbind(0), go.unbind(0)
        for t in range(time - 1, -1, -1):
            dt = d_l[t]
            torch.mul(dh.unsqueeze(1), q_l[t], out=dt[:, 2:])
            torch.mul(dt[:, 3:], p_l[t], out=dt[:, :2])
            nxt = bufs[t % 2]
            if t > 0:
                torch.addcmul(go_l[t - 1], dh, z_l[t], out=nxt)
            else:
                torch.mul(dh, z_l[t], out=nxt)
            nxt.addmm_(dt[:, :3].reshape(batch, 3 * hid), u_perm)
            dh = nxt
        d_flat = d.view(time * batch, 4 * hid)
        g_gi = g_w = g_b = None
        if ctx.needs_input_grad[0]:
            g_gi_tm = n.new_empty((time, batch, 3 * hid))
            g_gi_tm[..., :hid] = d[:, :, 0]
            g_gi_tm[..., hid:] = d[:, :, 2:].reshape(time, batch, 2 * hid)
            g_gi = _grad_in(g_gi_tm, bf)
        if ctx.needs_input_grad[2]:
            gw = d_flat[:, : 3 * hid].t() @ hp.reshape(time * batch, hid)
            g_w = torch.cat([gw[:hid], gw[2 * hid :], gw[hid : 2 * hid]])
        if ctx.has_bias and ctx.needs_input_grad[3]:
            gb = d_flat[:, : 3 * hid].sum(0)
            g_b = torch.cat([gb[:hid], gb[2 * hid :], gb[hid : 2 * hid]])
        g_h0 = dh if ctx.needs_input_grad[1] else None
        return g_gi, g_h0, g_w, g_b, None, None


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
    gi_tm = _time_major(gi, batch_first)
    mask_tm = _time_major(mask, batch_first)
    assert gi_tm is not None
    h = h0
    outs = []
    for t, g in enumerate(gi_tm.unbind(0)):
        ghh = torch.nn.functional.linear(h, weight_hh, bias_hh)
        xr, xz, xn = g.chunk(3, -1)
        hr, hz, hn = ghh.chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        nn_ = torch.tanh(xn + r * hn)
        new = (1 - z) * nn_ + z * h
        if mask_tm is not None:
            new = torch.where(mask_tm[t], new, h)
            outs.append(new * mask_tm[t])
        else:
            outs.append(new)
        h = new
    return torch.stack(outs, 1 if batch_first else 0), h


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
    _check(gi, h0, 3, batch_first, mask)
    if kernels_enabled(gi, h0, weight_hh, bias_hh):
        out, ht = _GRUResetAfter.apply(gi, h0, weight_hh, bias_hh, mask, batch_first)
        return out, ht
    return gru_reset_after_loop(gi, h0, weight_hh, bias_hh, mask, batch_first=batch_first)


# -- (b) reset-before GRU (Cho 2014 v3) and its slim variants (Dey & Salem 2017) ----------------------


def _gate_input(gi_g: Tensor | None, bias: Tensor | None, like: Tensor, rows: int) -> Tensor:
    """Input-side part of a gate pre-activation for all steps: ``gi_g + bias`` (either may be absent)."""
    time, batch = like.shape[0], like.shape[1]
    if gi_g is None:
        base = like.new_zeros(rows) if bias is None else bias
        return base.expand(time, batch, rows).contiguous()
    # always a fresh tensor: the loops accumulate into it in place
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
        batch_first: bool,
    ) -> tuple[Tensor, Tensor]:
        gi_tm = _time_major(gi, batch_first)
        mask_tm = _time_major(mask, batch_first)
        assert gi_tm is not None
        time, batch, width = gi_tm.shape
        hid = h0.size(1)
        gates_in = width == 3 * hid
        gi_n = gi_tm[..., 2 * hid :] if gates_in else gi_tm
        n = _gate_input(gi_n, bias_n, gi_tm, hid)  # each step adds (r h) U_n^T in place
        # gates' input side for every step at once; constant gates (gru3) are finished here too
        rz = _gate_input(gi_tm[..., : 2 * hid] if gates_in else None, bias_gates, gi_tm, 2 * hid)
        recurrent_gates = weight_gates is not None
        if not recurrent_gates:
            rz.sigmoid_()
        hs = gi.new_empty(time + 1, batch, hid)
        hs[0] = h0
        rh = gi.new_empty(time, batch, hid)
        un_t = weight_n.t()
        ug_t = weight_gates.t() if weight_gates is not None else None
        rz_l, rh_l, n_l, hs_l = rz.unbind(0), rh.unbind(0), n.unbind(0), hs.unbind(0)
        masks = mask_tm.unbind(0) if mask_tm is not None else None
        for t in range(time):
            h = hs_l[t]
            a = rz_l[t]
            if ug_t is not None:
                a.addmm_(h, ug_t)
                a.sigmoid_()
            torch.mul(a[:, :hid], h, out=rh_l[t])
            nt = n_l[t]
            nt.addmm_(rh_l[t], un_t)
            nt.tanh_()
            torch.lerp(nt, h, a[:, hid:], out=hs_l[t + 1])
            if masks is not None:
                torch.where(masks[t], hs_l[t + 1], h, out=hs_l[t + 1])
        ctx.save_for_backward(weight_n, weight_gates)
        ctx.buffers = (hs, rz, rh, n, mask_tm)
        ctx.flags = (batch_first, gates_in, bias_n is not None, bias_gates is not None)
        return _output(hs[1:], mask_tm, batch_first), hs[time].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_n, weight_gates = ctx.saved_tensors
        hs, rz, rh, n, mask = ctx.buffers
        bf, gates_in, has_bn, has_bg = ctx.flags
        time, batch, hid = n.shape
        go = _grad_out(grad_out, n, mask, bf)
        hp = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        q = n.new_empty((time, batch, 2, hid))
        torch.mul(hp - n, z * (1 - z), out=q[:, :, 0])
        torch.mul(1 - z, 1 - n * n, out=q[:, :, 1])
        a_r = hp * r * (1 - r)
        if mask is not None:
            q.mul_(mask.unsqueeze(-1))
            z = torch.where(mask, z, 1.0)
        d = n.new_empty((time, batch, 3, hid))  # slots [dr, dz, dn]
        drh = n.new_empty((time, batch, hid))
        dh = go[time - 1] if grad_ht is None else go[time - 1] + grad_ht
        bufs = (torch.empty_like(dh), torch.empty_like(dh))
        d_l, q_l, z_l, r_l, go_l = d.unbind(0), q.unbind(0), z.unbind(0), r.unbind(0), go.unbind(0)
        drh_l, ar_l = drh.unbind(0), a_r.unbind(0)
        for t in range(time - 1, -1, -1):
            dt = d_l[t]
            torch.mul(dh.unsqueeze(1), q_l[t], out=dt[:, 1:])
            torch.mm(dt[:, 2], weight_n, out=drh_l[t])
            nxt = bufs[t % 2]
            if t > 0:
                torch.addcmul(go_l[t - 1], dh, z_l[t], out=nxt)
            else:
                torch.mul(dh, z_l[t], out=nxt)
            nxt.addcmul_(drh_l[t], r_l[t])
            if weight_gates is not None:
                torch.mul(drh_l[t], ar_l[t], out=dt[:, 0])
                nxt.addmm_(dt[:, :2].reshape(batch, 2 * hid), weight_gates)
            dh = nxt
        if weight_gates is None:
            torch.mul(drh, a_r, out=d[:, :, 0])
        d_flat = d.view(time * batch, 3 * hid)
        d_gates, d_n = d_flat[:, : 2 * hid], d_flat[:, 2 * hid :]
        needs = ctx.needs_input_grad
        g_gi = g_un = g_bn = g_ug = g_bg = None
        if needs[0]:
            g_gi = _grad_in(d.view(time, batch, 3 * hid) if gates_in else d[:, :, 2], bf)
        if needs[2]:
            g_un = d_n.t() @ rh.view(time * batch, hid)
        if has_bn and needs[3]:
            g_bn = d_n.sum(0)
        if weight_gates is not None and needs[4]:
            g_ug = d_gates.t() @ hp.reshape(time * batch, hid)
        if has_bg and needs[5]:
            g_bg = d_gates.sum(0)
        g_h0 = dh if needs[1] else None
        return g_gi, g_h0, g_un, g_bn, g_ug, g_bg, None, None


def gru_reset_before_loop(
    gi: Tensor,
    h0: Tensor,
    weight_n: Tensor,
    bias_n: Tensor | None = None,
    weight_gates: Tensor | None = None,
    bias_gates: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`gru_reset_before` (the fallback and the reference)."""
    gi_tm = _time_major(gi, batch_first)
    mask_tm = _time_major(mask, batch_first)
    assert gi_tm is not None
    hid = h0.size(1)
    gates_in = gi_tm.size(-1) == 3 * hid
    h = h0
    outs = []
    for t, g in enumerate(gi_tm.unbind(0)):
        pre = g[:, : 2 * hid] if gates_in else torch.zeros_like(g[:, :1]).expand(-1, 2 * hid)
        if weight_gates is not None:
            pre = pre + torch.nn.functional.linear(h, weight_gates)
        if bias_gates is not None:
            pre = pre + bias_gates
        r, z = torch.sigmoid(pre).chunk(2, -1)
        xn = g[:, 2 * hid :] if gates_in else g
        cand = torch.tanh(xn + torch.nn.functional.linear(r * h, weight_n, bias_n))
        new = (1 - z) * cand + z * h
        if mask_tm is not None:
            new = torch.where(mask_tm[t], new, h)
            outs.append(new * mask_tm[t])
        else:
            outs.append(new)
        h = new
    return torch.stack(outs, 1 if batch_first else 0), h


def gru_reset_before(
    gi: Tensor,
    h0: Tensor,
    weight_n: Tensor,
    bias_n: Tensor | None = None,
    weight_gates: Tensor | None = None,
    bias_gates: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
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
        batch_first: layout of ``gi``, ``mask`` and the output.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    hid = h0.size(-1) if h0.dim() == 2 else 0
    _check(gi, h0, 3 if gi.size(-1) == 3 * hid else 1, batch_first, mask)
    if kernels_enabled(gi, h0, weight_n, bias_n, weight_gates, bias_gates):
        out, ht = _GRUResetBefore.apply(gi, h0, weight_n, bias_n, weight_gates, bias_gates, mask, batch_first)
        return out, ht
    return gru_reset_before_loop(
        gi, h0, weight_n, bias_n, weight_gates, bias_gates, mask, batch_first=batch_first
    )


# -- (c) MGU (Zhou et al. 2016), write convention ------------------------------------------------------


class _MGU(torch.autograd.Function):
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
        batch_first: bool,
    ) -> tuple[Tensor, Tensor]:
        gi_tm = _time_major(gi, batch_first)
        mask_tm = _time_major(mask, batch_first)
        assert gi_tm is not None
        time, batch, _ = gi_tm.shape
        hid = h0.size(1)
        f = _gate_input(gi_tm[..., :hid], bias_f, gi_tm, hid)
        n = _gate_input(gi_tm[..., hid:], bias_h, gi_tm, hid)
        hs = gi.new_empty(time + 1, batch, hid)
        hs[0] = h0
        fh = gi.new_empty(time, batch, hid)
        uf_t, uh_t = weight_f.t(), weight_h.t()
        f_l, fh_l, n_l, hs_l = f.unbind(0), fh.unbind(0), n.unbind(0), hs.unbind(0)
        masks = mask_tm.unbind(0) if mask_tm is not None else None
        for t in range(time):
            h = hs_l[t]
            ft = f_l[t]
            ft.addmm_(h, uf_t)
            ft.sigmoid_()
            torch.mul(ft, h, out=fh_l[t])
            nt = n_l[t]
            nt.addmm_(fh_l[t], uh_t)
            nt.tanh_()
            torch.lerp(h, nt, ft, out=hs_l[t + 1])  # (1 - f) h + f h~
            if masks is not None:
                torch.where(masks[t], hs_l[t + 1], h, out=hs_l[t + 1])
        ctx.save_for_backward(weight_f, weight_h)
        ctx.buffers = (hs, f, fh, n, mask_tm)
        ctx.flags = (batch_first, bias_f is not None, bias_h is not None)
        return _output(hs[1:], mask_tm, batch_first), hs[time].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_f, weight_h = ctx.saved_tensors
        hs, f, fh, n, mask = ctx.buffers
        bf, has_bf, has_bh = ctx.flags
        time, batch, hid = n.shape
        go = _grad_out(grad_out, n, mask, bf)
        hp = hs[:time]
        df_ = f * (1 - f)
        q = n.new_empty((time, batch, 2, hid))
        torch.mul(n - hp, df_, out=q[:, :, 0])  # d h / d f-pre via the update
        torch.mul(f, 1 - n * n, out=q[:, :, 1])  # d h / d candidate-pre
        a_f2 = hp * df_  # d (f h) / d f-pre
        keep = 1 - f
        if mask is not None:
            q.mul_(mask.unsqueeze(-1))
            keep = torch.where(mask, keep, 1.0)
        d = n.new_empty((time, batch, 2, hid))  # slots [df, dn]
        dfh = n.new_empty((time, batch, hid))
        dh = go[time - 1] if grad_ht is None else go[time - 1] + grad_ht
        bufs = (torch.empty_like(dh), torch.empty_like(dh))
        d_l, q_l, k_l, f_l, go_l = d.unbind(0), q.unbind(0), keep.unbind(0), f.unbind(0), go.unbind(0)
        dfh_l, a_l = dfh.unbind(0), a_f2.unbind(0)
        for t in range(time - 1, -1, -1):
            dt = d_l[t]
            torch.mul(dh.unsqueeze(1), q_l[t], out=dt)
            torch.mm(dt[:, 1], weight_h, out=dfh_l[t])
            dt[:, 0].addcmul_(dfh_l[t], a_l[t])
            nxt = bufs[t % 2]
            if t > 0:
                torch.addcmul(go_l[t - 1], dh, k_l[t], out=nxt)
            else:
                torch.mul(dh, k_l[t], out=nxt)
            nxt.addcmul_(dfh_l[t], f_l[t])
            nxt.addmm_(dt[:, 0], weight_f)
            dh = nxt
        d_flat = d.view(time * batch, 2 * hid)
        d_f, d_n = d_flat[:, :hid], d_flat[:, hid:]
        needs = ctx.needs_input_grad
        g_gi = g_uf = g_bf = g_uh = g_bh = None
        if needs[0]:
            g_gi = _grad_in(d.view(time, batch, 2 * hid), bf)
        if needs[2]:
            g_uf = d_f.t() @ hp.reshape(time * batch, hid)
        if has_bf and needs[3]:
            g_bf = d_f.sum(0)
        if needs[4]:
            g_uh = d_n.t() @ fh.view(time * batch, hid)
        if has_bh and needs[5]:
            g_bh = d_n.sum(0)
        g_h0 = dh if needs[1] else None
        return g_gi, g_h0, g_uf, g_bf, g_uh, g_bh, None, None


def mgu_loop(
    gi: Tensor,
    h0: Tensor,
    weight_f: Tensor,
    bias_f: Tensor | None,
    weight_h: Tensor,
    bias_h: Tensor | None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`mgu` (the fallback and the reference)."""
    gi_tm = _time_major(gi, batch_first)
    mask_tm = _time_major(mask, batch_first)
    assert gi_tm is not None
    hid = h0.size(1)
    h = h0
    outs = []
    for t, g in enumerate(gi_tm.unbind(0)):
        fg = torch.sigmoid(g[:, :hid] + torch.nn.functional.linear(h, weight_f, bias_f))
        cand = torch.tanh(g[:, hid:] + torch.nn.functional.linear(fg * h, weight_h, bias_h))
        new = (1 - fg) * h + fg * cand
        if mask_tm is not None:
            new = torch.where(mask_tm[t], new, h)
            outs.append(new * mask_tm[t])
        else:
            outs.append(new)
        h = new
    return torch.stack(outs, 1 if batch_first else 0), h


def mgu(
    gi: Tensor,
    h0: Tensor,
    weight_f: Tensor,
    bias_f: Tensor | None,
    weight_h: Tensor,
    bias_h: Tensor | None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Minimal gated unit, write convention: blocks ``f, h`` of ``gi``.

    ``f = σ(gi_f + h U_f^T + b_f)``; ``h~ = tanh(gi_h + (f ⊙ h) U_h^T + b_h)``; ``h = (1 − f) ⊙ h + f ⊙ h~``.

    Args:
        gi: input pre-activations ``[B, T, 2H]``.
        h0: initial state ``[B, H]``.
        weight_f, bias_f: forget gate's recurrent weight ``[H, H]`` and bias (or ``None``).
        weight_h, bias_h: candidate's recurrent weight ``[H, H]`` and bias (or ``None``).
        mask: optional bool step mask ``[B, T, 1]``, true on real steps.
        batch_first: layout of ``gi``, ``mask`` and the output.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    _check(gi, h0, 2, batch_first, mask)
    if kernels_enabled(gi, h0, weight_f, bias_f, weight_h, bias_h):
        out, ht = _MGU.apply(gi, h0, weight_f, bias_f, weight_h, bias_h, mask, batch_first)
        return out, ht
    return mgu_loop(gi, h0, weight_f, bias_f, weight_h, bias_h, mask, batch_first=batch_first)


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
        gi_tm = _time_major(gi, batch_first)
        mask_tm = _time_major(mask, batch_first)
        assert gi_tm is not None
        time, batch, hid = gi_tm.shape
        hs = gi.new_empty(time + 1, batch, hid)
        hs[0] = h0
        hs_l, gi_l = hs.unbind(0), gi_tm.unbind(0)
        masks = mask_tm.unbind(0) if mask_tm is not None else None
        for t in range(time):
            nxt = hs_l[t + 1]
            torch.addcmul(gi_l[t], weight, hs_l[t], out=nxt)
            nxt.relu_()
            if masks is not None:
                torch.where(masks[t], nxt, hs_l[t], out=nxt)
        ctx.save_for_backward(weight)
        ctx.buffers = (hs, mask_tm)
        ctx.batch_first = batch_first
        return _output(hs[1:], mask_tm, batch_first), hs[time].clone()

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
        go = _grad_out(grad_out, hs[1:], mask, bf)
        g = _reverse_linear(go, coef, grad_ht)
        needs = ctx.needs_input_grad
        g_h0 = g[0] * coef[0] if needs[1] else None
        dpre = g.mul_(active)
        g_gi = _grad_in(dpre, bf) if needs[0] else None
        g_w = (dpre * hs[:time]).sum((0, 1)) if needs[2] else None
        return g_gi, g_h0, g_w, None, None


def indrnn_loop(
    gi: Tensor, h0: Tensor, weight: Tensor, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`indrnn` (the fallback and the reference)."""
    gi_tm = _time_major(gi, batch_first)
    mask_tm = _time_major(mask, batch_first)
    assert gi_tm is not None
    h = h0
    outs = []
    for t, g in enumerate(gi_tm.unbind(0)):
        new = torch.relu(g + weight * h)
        if mask_tm is not None:
            new = torch.where(mask_tm[t], new, h)
            outs.append(new * mask_tm[t])
        else:
            outs.append(new)
        h = new
    return torch.stack(outs, 1 if batch_first else 0), h


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
    _check(gi, h0, 1, batch_first, mask)
    if kernels_enabled(gi, h0, weight):
        out, ht = _IndRNN.apply(gi, h0, weight, mask, batch_first)
        return out, ht
    return indrnn_loop(gi, h0, weight, mask, batch_first=batch_first)


class _LinearRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, a: Tensor, b: Tensor, h0: Tensor | None, mask: Tensor | None, batch_first: bool
    ) -> tuple[Tensor, Tensor]:
        a_tm = _time_major(a, batch_first)
        b_tm = _time_major(b, batch_first)
        mask_tm = _time_major(mask, batch_first)
        assert a_tm is not None and b_tm is not None
        if mask_tm is not None:
            # a padding step keeps the state: a = 1, b = 0 there
            a_tm = torch.where(mask_tm, a_tm, 1.0)
            b_tm = torch.where(mask_tm, b_tm, 0.0)
        time, batch, hid = b_tm.shape
        hs = b.new_empty(time + 1, batch, hid)
        if h0 is None:
            hs[0].zero_()
        else:
            hs[0] = h0
        hs_l, a_l, b_l = hs.unbind(0), a_tm.unbind(0), b_tm.unbind(0)
        for t in range(time):
            torch.addcmul(b_l[t], a_l[t], hs_l[t], out=hs_l[t + 1])
        ctx.buffers = (hs, a_tm, mask_tm)
        ctx.batch_first = batch_first
        return _output(hs[1:], mask_tm, batch_first), hs[time].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, a_tm, mask = ctx.buffers
        bf = ctx.batch_first
        time = hs.size(0) - 1
        go = _grad_out(grad_out, hs[1:], mask, bf)
        g = _reverse_linear(go, a_tm, grad_ht)
        needs = ctx.needs_input_grad
        g_h0 = g[0] * a_tm[0] if needs[2] else None
        g_a = g * hs[:time] if needs[0] else None
        if mask is not None:
            g.mul_(mask)
            if g_a is not None:
                g_a.mul_(mask)
        g_b = g if needs[1] else None
        return (
            _grad_in(g_a, bf) if g_a is not None else None,
            _grad_in(g_b, bf) if g_b is not None else None,
            g_h0,
            None,
            None,
        )


def linear_recurrence_loop(
    a: Tensor, b: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`linear_recurrence` (the fallback and the reference)."""
    a_tm, b_tm = _time_major(a, batch_first), _time_major(b, batch_first)
    mask_tm = _time_major(mask, batch_first)
    assert a_tm is not None and b_tm is not None
    h = torch.zeros_like(b_tm[0]) if h0 is None else h0
    outs = []
    for t, (a_t, b_t) in enumerate(zip(a_tm.unbind(0), b_tm.unbind(0), strict=True)):
        new = a_t * h + b_t
        if mask_tm is not None:
            new = torch.where(mask_tm[t], new, h)
            outs.append(new * mask_tm[t])
        else:
            outs.append(new)
        h = new
    return torch.stack(outs, 1 if batch_first else 0), h


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
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(
            f"a and b must be 3-d tensors of the same shape, got {list(a.shape)} and {list(b.shape)}"
        )
    if h0 is not None:
        _check(b, h0, 1, batch_first, mask)
    if kernels_enabled(a, b, h0):
        out, ht = _LinearRecurrence.apply(a, b, h0, mask, batch_first)
        return out, ht
    return linear_recurrence_loop(a, b, h0, mask, batch_first=batch_first)


class _MinGRU(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, k: Tensor, cand: Tensor, h0: Tensor | None, mask: Tensor | None, batch_first: bool
    ) -> tuple[Tensor, Tensor]:
        k_tm = _time_major(k, batch_first)
        c_tm = _time_major(cand, batch_first)
        mask_tm = _time_major(mask, batch_first)
        assert k_tm is not None and c_tm is not None
        time, batch, hid = c_tm.shape
        z = torch.sigmoid(k_tm).contiguous()
        if mask_tm is not None:
            z.mul_(mask_tm)  # z = 0 keeps the state exactly (lerp with weight 0)
        hs = cand.new_empty(time + 1, batch, hid)
        if h0 is None:
            hs[0].zero_()
        else:
            hs[0] = h0
        hs_l, c_l, z_l = hs.unbind(0), c_tm.unbind(0), z.unbind(0)
        for t in range(time):
            torch.lerp(hs_l[t], c_l[t], z_l[t], out=hs_l[t + 1])  # (1 - z) h + z h~
        ctx.save_for_backward(cand)
        ctx.buffers = (hs, z, mask_tm)
        ctx.batch_first = batch_first
        return _output(hs[1:], mask_tm, batch_first), hs[time].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        (cand,) = ctx.saved_tensors
        hs, z, mask = ctx.buffers
        bf = ctx.batch_first
        time = hs.size(0) - 1
        c_tm = _time_major(cand, bf)
        assert c_tm is not None
        keep = 1 - z
        go = _grad_out(grad_out, z, mask, bf)
        g = _reverse_linear(go, keep, grad_ht)
        needs = ctx.needs_input_grad
        g_h0 = g[0] * keep[0] if needs[2] else None
        g_k = g_c = None
        if needs[0]:
            g_k = (c_tm - hs[:time]).mul_(g).mul_(z).mul_(keep)  # dh/dz times σ'
        if needs[1]:
            g_c = g.mul_(z)
        return (
            _grad_in(g_k, bf) if g_k is not None else None,
            _grad_in(g_c, bf) if g_c is not None else None,
            g_h0,
            None,
            None,
        )


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
    if k.shape != cand.shape or k.dim() != 3:
        raise ValueError(
            f"k and cand must be 3-d tensors of the same shape, got {list(k.shape)}, {list(cand.shape)}"
        )
    if h0 is not None:
        _check(cand, h0, 1, batch_first, mask)
    if kernels_enabled(k, cand, h0):
        out, ht = _MinGRU.apply(k, cand, h0, mask, batch_first)
        return out, ht
    return min_gru_loop(k, cand, h0, mask, batch_first=batch_first)
