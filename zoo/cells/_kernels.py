"""Hand-written forward/backward kernels for the GRU family on CPU.

Each recurrence is a ``torch.autograd.Function`` whose forward runs the time loop doing only the
per-step recurrent matmul and element-wise math into preallocated buffers (no autograd nodes per
step), and whose backward is written by hand: a reverse-time loop for the recurrent part, and the
recurrent weight gradient as large matmuls over many steps (all of them, or blocks of
:data:`_CHUNK` steps whose buffers are reused and stay in cache). The input projections are
computed by the caller for every step at once, so their gradients (``W``, ``x``) are one matmul each
as well. Factors of the backward that do not depend on the incoming gradient (sigmoid/tanh
derivatives, masks) are computed vectorised over all steps or over a block, so the reverse loop is 2
to 8 ops per step. Two things measured to matter on CPU: torch's ``tanh`` costs about four sigmoids
(the kernels use ``2σ(2x) − 1``), and with glibc's default ``malloc`` every fresh ``[T, B, H]``
buffer page-faults in, so the kernels allocate few of them.

Kernels: reset-after GRU (``gru_reset_after``, torch's ``nn.GRU``), its layer-normalised form
(``ln_gru``), reset-before GRU and its gate variants (``gru_reset_before``), MGU (``mgu``), IndRNN
(``indrnn``), the linear recurrence and minGRU (``linear_recurrence``, ``min_gru``, ``min_gru_packed``).

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
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from zoo.cells.base import RecurrentLayer, step_mask

__all__ = [
    "gru_reset_after",
    "gru_reset_after_loop",
    "gru_reset_before",
    "gru_reset_before_loop",
    "indrnn",
    "indrnn_loop",
    "kernels_enabled",
    "layer_inputs",
    "linear_recurrence",
    "linear_recurrence_loop",
    "ln_gru",
    "ln_gru_loop",
    "mgu",
    "mgu_loop",
    "min_gru",
    "min_gru_loop",
    "min_gru_packed",
    "use_kernels",
]

_ENABLED = os.environ.get("ZOO_KERNELS", "1") != "0"
# Where the kernels were measured faster than the autograd loop and checked against it: on an H200 they
# took 0.6x the loop's time (gru1 6.2 vs 10.0 ms, mgu 5.8 vs 9.1 at T=128; docs/benchmarks.md).
# ZOO_KERNELS=all also allows any other device.
_DEVICES = ("cpu", "cuda")
_ANY_DEVICE = os.environ.get("ZOO_KERNELS", "1") == "all"
_DTYPES = (torch.float32, torch.float64)
# steps per block of the blocked backward passes: a block's factors and gradients stay in cache
_CHUNK = 16
_LN_EPS = 1e-5  # F.layer_norm's default, as the layer-norm cells use


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


def _autocast_on(device_type: str) -> bool:
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def kernels_enabled(*tensors: Tensor | None, ignore_autocast: bool = False) -> bool:
    """Whether the hand-written kernels can run on these tensors.

    True on CPU and CUDA for float32/float64 tensors outside ``torch.func`` transforms (vmap/grad/jvp),
    TorchScript, ``torch.compile`` and autocast, unless turned off by :func:`use_kernels` or
    ``ZOO_KERNELS=0``; ``ZOO_KERNELS=all`` allows any device. ``ignore_autocast=True`` is for callers
    that run the kernel with autocast off, in the state's precision (``zoo.cells.base.run_kernel``).
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
        if not ignore_autocast and _autocast_on(t.device.type):
            # called under autocast, the loop computes what autocast asks for (e.g. bf16 matmuls)
            return False
        if t.dtype not in _DTYPES or _functorch_wrapped(t):
            return False
    return True


def layer_inputs(
    layer: RecurrentLayer, x: Tensor, state: object, lengths: Tensor | None
) -> tuple[Tensor, Tensor | None] | None:
    """``(h0, mask)`` for running a one-tensor-state layer on a kernel, or ``None`` where none can run.

    ``state`` is the layer's state or ``None`` (zeros); ``lengths`` the
    checked lengths or ``None``. ``None`` back means: take the layer's step loop. The layer then runs
    the kernel through ``zoo.cells.base.run_kernel`` (autocast off, the state's precision), so autocast
    does not rule the kernel out.
    """
    tensors = (x, *([state] if isinstance(state, Tensor) else []), *layer.parameters())
    if not kernels_enabled(*tensors, ignore_autocast=True):
        return None
    h0 = state if isinstance(state, Tensor) else x.new_zeros(x.size(0), layer.hidden_size)
    mask = None if lengths is None else step_mask(lengths, x.size(1), x.device)
    return h0, mask


# -- shared scaffolding ------------------------------------------------------------------------------


def _time_major(t: Tensor | None, batch_first: bool) -> Tensor | None:
    if t is None:
        return None
    return t.transpose(0, 1) if batch_first else t


def _inputs(batch_first: bool, mask: Tensor | None, *seqs: Tensor) -> tuple[Tensor | None, list[Tensor]]:
    """The step mask and the per-step sequences, all time-major (``[T, B, ...]``) views."""
    return _time_major(mask, batch_first), [s.transpose(0, 1) if batch_first else s for s in seqs]


def _output(hs: Tensor, mask: Tensor | None, batch_first: bool) -> Tensor:
    """``[T, B, H]`` states -> the layer output in the caller's layout (own storage), zero on padding."""
    src, m = (
        (hs.transpose(0, 1), None if mask is None else mask.transpose(0, 1)) if batch_first else (hs, mask)
    )
    out = hs.new_empty(src.shape)
    # a copy, so an in-place edit of the output cannot corrupt the states saved for backward
    if m is None:
        out.copy_(src)
    else:
        torch.mul(src, m, out=out)
    return out


def _recur(
    h0: Tensor | None,
    like: Tensor,
    mask: Tensor | None,
    step: Callable[[int, Tensor, Tensor], object],
    block: Callable[[int, int], object] | None = None,
) -> Tensor:
    """The forward time loop into one preallocated ``[T + 1, B, H]`` state buffer (``hs[0] = h0``).

    ``step(t, h_prev, h_next)`` writes step ``t``'s new state into ``h_next`` (a view of the buffer);
    a padding step then keeps the previous state. ``like`` is any time-major ``[T, B, H]`` tensor.
    ``block(lo, hi)``, if given, runs before each block of :data:`_CHUNK` steps ``lo <= t < hi``: for
    per-block input-side work into small reused buffers (in cache; at long ``T`` a whole-sequence
    buffer is page-faulted in and streamed through memory).
    """
    time, batch, hid = like.size(0), like.size(1), like.size(2)
    hs = like.new_empty(time + 1, batch, hid)
    if h0 is None:
        hs[0].zero_()
    else:
        hs[0] = h0
    hs_l = hs.unbind(0)
    masks = mask.unbind(0) if mask is not None else None
    for t in range(time):
        if block is not None and t % _CHUNK == 0:
            block(t, min(t + _CHUNK, time))
        step(t, hs_l[t], hs_l[t + 1])
        if masks is not None:
            torch.where(masks[t], hs_l[t + 1], hs_l[t], out=hs_l[t + 1])
    return hs


def _finish(
    ctx: Any, hs: Tensor, mask: Tensor | None, batch_first: bool, *buffers: Any
) -> tuple[Tensor, Tensor]:
    """Keep what the backward needs on ``ctx``; return ``(output, h_T)`` from the state buffer."""
    ctx.buffers = (hs, mask, *buffers)
    ctx.batch_first = batch_first
    return _output(hs[1:], mask, batch_first), hs[hs.size(0) - 1].clone()


def _grad_out(grad: Tensor | None, like: Tensor, mask: Tensor | None, batch_first: bool) -> Tensor:
    """Incoming output gradient as a time-major ``[T, B, H]`` tensor, zero on padding."""
    if grad is None:
        return torch.zeros_like(like)
    g = grad.transpose(0, 1) if batch_first else grad
    # any strides will do: the loops read it one step at a time
    return g * mask if mask is not None else g


def _grad_in(d_tm: Tensor | None, batch_first: bool) -> Tensor | None:
    if d_tm is None:
        return None
    return d_tm.transpose(0, 1) if batch_first else d_tm


def _reverse(
    go: Tensor,
    grad_ht: Tensor | None,
    keep: Tensor,
    step: Callable[[int, Tensor, Tensor], object],
    chunk: Callable[[int, int, bool], object] | None = None,
    block_keep: bool = False,
) -> Tensor:
    """The reverse time loop of a gated recurrence; returns the gradient of ``h0``.

    From ``dh_{T-1} = go_{T-1} + grad_hT`` it runs ``dh_{t-1} = go_{t-1} + keep_t ⊙ dh_t + (...)``,
    where ``step(t, dh_t, acc)`` fills the kernel's per-step gradient slots from ``dh_t`` and adds its
    recurrent terms (matmuls through ``U``) into ``acc``, which already holds the first two terms.
    ``chunk(lo, hi, before)``, if given, runs before and after each block of :data:`_CHUNK` steps
    ``lo <= t < hi`` (latest block first): for per-block factors and weight gradients that stay in cache.
    ``keep`` is ``[T, B, H]``, or with ``block_keep`` a ``[_CHUNK, B, H]`` buffer that ``chunk`` fills
    for each block (step ``t`` reads row ``t - lo``).
    """
    time = go.size(0)
    dh = go[time - 1] if grad_ht is None else go[time - 1] + grad_ht
    bufs = (torch.empty_like(dh), torch.empty_like(dh))
    go_l, k_l = go.unbind(0), keep.unbind(0)
    for hi in range(time, 0, -_CHUNK):
        lo = max(hi - _CHUNK, 0)
        off = lo if block_keep else 0
        if chunk is not None:
            chunk(lo, hi, True)
        for t in range(hi - 1, lo - 1, -1):
            nxt = bufs[t % 2]
            if t > 0:
                torch.addcmul(go_l[t - 1], dh, k_l[t - off], out=nxt)
            else:
                torch.mul(dh, k_l[t - off], out=nxt)
            step(t, dh, nxt)
            dh = nxt
        if chunk is not None:
            chunk(lo, hi, False)
    return dh


def _rows(bias: Tensor | None, batch: int) -> Tensor | None:
    """``bias`` repeated for every row of a batch, contiguous: ``addmm(out=)`` starts from a plain copy
    of it (a broadcast copy of a vector measured about ten times slower per step here).

    Read only: at ``batch == 1`` the result is ``bias`` itself (``contiguous()`` returns a view).
    """
    return None if bias is None else bias.expand(batch, bias.size(0)).contiguous()


def _tanh_of_half_(t: Tensor, minus_one: Tensor | None = None) -> Tensor:
    """``tanh(t / 2)`` in place, as ``2σ(t) − 1``: torch's CPU ``tanh`` costs about four sigmoids.

    The kernels get ``t = 2x`` for free from the step's ``addmm`` (``beta = alpha = 2``).
    ``minus_one``: a 0-d ``-1`` of ``t``'s dtype and device made once per sequence (not once a step).
    """
    t.sigmoid_()
    return torch.add(t.new_full((), -1.0) if minus_one is None else minus_one, t, alpha=2, out=t)


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


def _wgrad(need: bool, d: Tensor, x: Tensor) -> Tensor | None:
    """Gradient of a recurrent weight over all steps at once: ``d^T x`` with ``d`` ``[T*B, rows]``."""
    return d.t() @ x.reshape(-1, x.size(-1)) if need else None


def _bgrad(need: bool, d: Tensor) -> Tensor | None:
    return d.sum(0) if need else None


class _ChunkedWeightGrad:
    """``out += Σ_t d_t^T x_t`` over a reverse loop, one matmul per chunk of steps.

    The per-step ``d_t`` go into a small buffer (a few steps, in cache and never page-faulted afresh)
    and meet ``x`` of the same steps in one ``addmm`` when it is full: nearly the speed of a single
    matmul over all steps without a ``[T, B, rows]`` buffer.
    """

    def __init__(self, out: Tensor, x: Tensor) -> None:
        self.out, self.x, self.chunk = out, x, _CHUNK
        self.buf = x.new_empty(_CHUNK, x.size(1), out.size(0))
        self.lo: int | None = None  # the lowest step held; steps arrive in decreasing order

    def add(self, t: int, d: Tensor) -> None:
        slot = t % self.chunk
        self.buf[slot].copy_(d)
        self.lo = t
        if slot == 0:
            self.flush()

    def flush(self) -> None:
        if self.lo is None:
            return
        lo = self.lo
        hi = (lo // self.chunk) * self.chunk + self.chunk  # exclusive end of the chunk being filled
        hi = min(hi, self.x.size(0))
        rows = self.buf[lo % self.chunk : lo % self.chunk + hi - lo].reshape(-1, self.buf.size(-1))
        self.out.addmm_(rows.t(), self.x[lo:hi].reshape(-1, self.x.size(-1)))
        self.lo = None


def _dispatch(
    function: type[torch.autograd.Function],
    loop: Callable[..., tuple[Tensor, Tensor]],
    args: tuple[Tensor | None, ...],
    mask: Tensor | None,
    batch_first: bool,
) -> tuple[Tensor, Tensor]:
    """The kernel where :func:`kernels_enabled` allows it, else the plain autograd loop."""
    if kernels_enabled(*args):
        out, ht = function.apply(*args, mask, batch_first)
        return out, ht
    return loop(*args, mask, batch_first=batch_first)


def _autograd_loop(
    step: Callable[..., Tensor], h0: Tensor, mask: Tensor | None, batch_first: bool, *seqs: Tensor
) -> tuple[Tensor, Tensor]:
    """Reference loop under autograd: ``h = step(h, *seqs[t])``; time-major ``seqs`` and ``mask``."""
    h = h0
    outs = []
    for t, xs in enumerate(zip(*(s.unbind(0) for s in seqs), strict=True)):
        new = step(h, *xs)
        if mask is not None:
            new = torch.where(mask[t], new, h)
            outs.append(new * mask[t])
        else:
            outs.append(new)
        h = new
    return torch.stack(outs, 1 if batch_first else 0), h


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


def _check_pair(
    a: Tensor, b: Tensor, h0: Tensor | None, mask: Tensor | None, batch_first: bool, na: str, nb: str
) -> None:
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(
            f"{na} and {nb} must be 3-d tensors of the same shape, got {list(a.shape)} and {list(b.shape)}"
        )
    if h0 is not None:
        _check(b, h0, 1, batch_first, mask)


# -- (a) reset-after GRU (torch / cuDNN form) ---------------------------------------------------------


def _nrz(t: Tensor, hid: int) -> Tensor:
    """Rows (or entries) in blocks ``[r, z, n]`` -> ``[n, r, z]``."""
    return torch.cat([t[2 * hid :], t[: 2 * hid]])


def _rzn(t: Tensor, hid: int) -> Tensor:
    """Rows (or entries) in blocks ``[n, r, z]`` -> ``[r, z, n]`` (undoes :func:`_nrz`)."""
    return torch.cat([t[hid:], t[:hid]])


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
        mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
        time, batch, three_h = gi_tm.shape
        hid = three_h // 3
        gh = gi.new_empty(time, batch, three_h)  # h U^T + c of every step (its n block is needed backward)
        rz = gi.new_empty(time, batch, 2 * hid)
        n = torch.mul(gi_tm[..., 2 * hid :], 2)  # doubled (see _tanh_of_half_); each step adds to it
        u_t = weight_hh.t()
        gi_rz = gi_tm[..., : 2 * hid].unbind(0)
        gh_l, rz_l, n_l = gh.unbind(0), rz.unbind(0), n.unbind(0)
        minus_one = gi.new_full((), -1.0)
        bias_rows = _rows(bias_hh, batch)

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
            _tanh_of_half_(nt, minus_one)
            torch.lerp(nt, h, a[:, hid:], out=out)  # (1 - z) n + z h

        hs = _recur(h0, n, mask_tm, step)
        ctx.save_for_backward(weight_hh)
        ctx.has_bias = bias_hh is not None
        return _finish(ctx, hs, mask_tm, batch_first, gh, rz, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        (weight_hh,) = ctx.saved_tensors
        hs, mask, gh, rz, n = ctx.buffers
        bf = ctx.batch_first
        time, batch, hid = n.shape
        three_h = 3 * hid
        go = _grad_out(grad_out, n, mask, bf)
        hp = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        q = _update_factors(hp, n, z)  # d h / d (z-pre, n-pre)
        p = n.new_empty(time, batch, 2, hid)
        p[:, :, 0] = r  # d n-pre / d gh_n
        torch.mul(gh[..., 2 * hid :], torch.addcmul(r, r, r, value=-1), out=p[:, :, 1])  # d n-pre / d r-pre
        keep = _keep(z, q, mask)
        u = _nrz(weight_hh, hid)
        g_gi = torch.empty(
            (batch, time, three_h) if bf else (time, batch, three_h), dtype=n.dtype, device=n.device
        )
        g_gi_l = (g_gi.transpose(0, 1) if bf else g_gi).unbind(0)
        e = torch.empty(
            batch, 3, hid, dtype=n.dtype, device=n.device
        )  # gradient of h U^T + c, blocks [n, r, z]
        needs = ctx.needs_input_grad
        g_u = hs.new_zeros(three_h, hid) if needs[2] else None
        wgrad = None if g_u is None else _ChunkedWeightGrad(g_u, hp)
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

        dh0 = _reverse(go, grad_ht, keep, step)
        if wgrad is not None:
            wgrad.flush()
        return (
            g_gi if needs[0] else None,
            dh0 if needs[1] else None,
            None if g_u is None else _rzn(g_u, hid),
            None if e_sum is None else _rzn(e_sum.sum(0), hid),
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
    mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)

    def step(h: Tensor, g: Tensor) -> Tensor:
        ghh = torch.nn.functional.linear(h, weight_hh, bias_hh)
        xr, xz, xn = g.chunk(3, -1)
        hr, hz, hn = ghh.chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        nn_ = torch.tanh(xn + r * hn)
        return (1 - z) * nn_ + z * h

    return _autograd_loop(step, h0, mask_tm, batch_first, gi_tm)


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
    return _dispatch(_GRUResetAfter, gru_reset_after_loop, (gi, h0, weight_hh, bias_hh), mask, batch_first)


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
        batch_first: bool,
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
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
            g_in = _rows(bias_gates, batch) if gates_x is None else gates_x
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

        def step(t: int, h: Tensor, out: Tensor) -> None:
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
            _tanh_of_half_(nt, minus_one)
            torch.lerp(nt, h, z_l[t], out=out)

        hs = _recur(h0, n, mask_tm, step)
        ctx.save_for_backward(weight_n, weight_gates)
        ctx.flags = (gates_in, bias_n is not None, bias_gates is not None)
        return _finish(ctx, hs, mask_tm, batch_first, rz, rh, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_n, weight_gates = ctx.saved_tensors
        hs, mask, rz, rh, n = ctx.buffers
        bf = ctx.batch_first
        gates_in, has_bn, has_bg = ctx.flags
        time, batch, hid = n.shape
        go = _grad_out(grad_out, n, mask, bf)
        hp = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        keep = z if mask is None else torch.where(mask, z, 1.0)
        needs = ctx.needs_input_grad
        # Blocked: the factors, the slots [dr, dz, dn] and the weight gradients of _CHUNK steps at a
        # time live in small buffers reused block after block (in cache, never page-faulted afresh);
        # only the input gradient is a whole-sequence buffer, written in the caller's layout.
        q = n.new_empty(_CHUNK, batch, 2, hid)
        a_r = n.new_empty(_CHUNK, batch, hid)
        d = n.new_empty(_CHUNK, batch, 3, hid)
        drh = n.new_empty(_CHUNK, batch, hid)
        width = 3 * hid if gates_in else hid
        g_gi = n.new_empty((batch, time, width) if bf else (time, batch, width)) if needs[0] else None
        g_gi_tm = _time_major(g_gi, bf)
        g_un = n.new_zeros(hid, hid) if needs[2] else None
        g_ug = n.new_zeros(2 * hid, hid) if weight_gates is not None and needs[4] else None
        d_sum = n.new_zeros(3 * hid)
        q_l, drh_l, ar_l = q.unbind(0), drh.unbind(0), a_r.unbind(0)
        r_l = r.unbind(0)
        base = [0]

        def chunk(lo: int, hi: int, before: bool) -> None:
            k = hi - lo
            if before:
                base[0] = lo
                h_c, n_c, z_c, r_c = hp[lo:hi], n[lo:hi], z[lo:hi], r[lo:hi]
                q0, q1 = q[:k, :, 0], q[:k, :, 1]
                torch.addcmul(z_c, z_c, z_c, value=-1, out=a_r[:k])  # z (1 - z), a_r as scratch
                torch.sub(h_c, n_c, out=q0).mul_(a_r[:k])  # d h / d z-pre
                torch.addcmul(n.new_ones(()), n_c, n_c, value=-1, out=q1)
                q1.addcmul_(q1, z_c, value=-1)  # d h / d n-pre = (1 - n²)(1 - z)
                torch.addcmul(r_c, r_c, r_c, value=-1, out=a_r[:k]).mul_(h_c)  # d (r h) / d r-pre
                if mask is not None:
                    q[:k].mul_(mask[lo:hi].unsqueeze(-1))
                return
            if weight_gates is None:
                torch.mul(drh[:k], a_r[:k], out=d[:k, :, 0])
            d_flat = d[:k].view(k * batch, 3 * hid)
            if g_un is not None:
                g_un.addmm_(d_flat[:, 2 * hid :].t(), rh[lo:hi].reshape(k * batch, hid))
            if g_ug is not None:
                g_ug.addmm_(d_flat[:, : 2 * hid].t(), hp[lo:hi].reshape(k * batch, hid))
            d_sum.add_(d_flat.sum(0))
            if g_gi_tm is not None:
                g_gi_tm[lo:hi].copy_(d[:k].view(k, batch, 3 * hid) if gates_in else d[:k, :, 2])

        # per-step views of the slots made once (d is reused block after block)
        dzn_l, dn_l, dr_l = d[:, :, 1:].unbind(0), d[:, :, 2].unbind(0), d[:, :, 0].unbind(0)
        drz_l = [v.view(batch, 2 * hid) for v in d[:, :, :2].unbind(0)]

        def step(t: int, dh: Tensor, acc: Tensor) -> None:
            i = t - base[0]
            drh_i = drh_l[i]
            torch.mul(dh.unsqueeze(1), q_l[i], out=dzn_l[i])
            torch.mm(dn_l[i], weight_n, out=drh_i)
            acc.addcmul_(drh_i, r_l[t])
            if weight_gates is not None:
                torch.mul(drh_i, ar_l[i], out=dr_l[i])
                acc.addmm_(drz_l[i], weight_gates)

        dh0 = _reverse(go, grad_ht, keep, step, chunk)
        return (
            g_gi,
            dh0 if needs[1] else None,
            g_un,
            d_sum[2 * hid :] if has_bn and needs[3] else None,
            g_ug,
            d_sum[: 2 * hid] if has_bg and needs[5] else None,
            None,
            None,
        )


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
    mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
    hid = h0.size(1)
    gates_in = gi_tm.size(-1) == 3 * hid

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

    return _autograd_loop(step, h0, mask_tm, batch_first, gi_tm)


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
    args = (gi, h0, weight_n, bias_n, weight_gates, bias_gates)
    return _dispatch(_GRUResetBefore, gru_reset_before_loop, args, mask, batch_first)


# -- (b') layer-normalised reset-after GRU (haste's LayerNormGRU) --------------------------------------


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
        batch_first: bool,
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
        time, batch, three_h = gi_tm.shape
        hid = three_h // 3
        norm_shape = (three_h,)
        u_t = _nrz(weight_hh, hid).t()
        gamma = _nrz(gamma_hh, hid)
        beta = None if bias_hh is None else _nrz(bias_hh, hid)
        graw = gi.new_empty(time, batch, three_h)  # U h of every step: the norm's input, kept for backward
        rz = gi.new_empty(time, batch, 2 * hid)
        n = gi.new_empty(time, batch, hid)  # doubled (see _tanh_of_half_), each step adds to it
        stats: list[tuple[Tensor, Tensor]] = []
        minus_one = gi.new_full((), -1.0)
        gi_rz = gi_tm[..., : 2 * hid].unbind(0)
        graw_l, rz_l, n_l = graw.unbind(0), rz.unbind(0), n.unbind(0)
        r_l, z_l = rz[..., :hid].unbind(0), rz[..., hid:].unbind(0)

        def step(t: int, h: Tensor, out: Tensor) -> None:
            g = graw_l[t]
            torch.mm(h, u_t, out=g)
            y, mean, rstd = torch.native_layer_norm(g, norm_shape, gamma, beta, _LN_EPS)
            stats.append((mean, rstd))
            a = rz_l[t]
            torch.add(gi_rz[t], y[:, hid:], out=a)
            a.sigmoid_()
            nt = n_l[t]
            nt.addcmul_(r_l[t], y[:, :hid], value=2)
            _tanh_of_half_(nt, minus_one)
            torch.lerp(nt, h, z_l[t], out=out)  # (1 - z) n + z h

        def block(lo: int, hi: int) -> None:  # written while the block's steps use it (in cache)
            torch.mul(gi_tm[lo:hi, :, 2 * hid :], 2, out=n[lo:hi])

        hs = _recur(h0, n, mask_tm, step, block)
        mean, rstd = (torch.stack(s) for s in zip(*stats, strict=True))
        ctx.save_for_backward(weight_hh, gamma_hh, bias_hh)
        return _finish(ctx, hs, mask_tm, batch_first, graw, mean, rstd, rz, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_hh, gamma_hh, bias_hh = ctx.saved_tensors
        hs, mask, graw, mean, rstd, rz, n = ctx.buffers
        bf = ctx.batch_first
        time, batch, hid = n.shape
        three_h = 3 * hid
        u = _nrz(weight_hh, hid)
        gamma = _nrz(gamma_hh, hid)
        beta = None if bias_hh is None else _nrz(bias_hh, hid)
        go = _grad_out(grad_out, n, mask, bf)
        hp = hs[:time]
        r, z = rz[..., :hid], rz[..., hid:]
        keep = z if mask is None else torch.where(mask, z, 1.0)
        # the factors that do not depend on the incoming gradient, per block of _CHUNK steps into small
        # buffers reused block after block (in cache; whole-sequence ones would be page-faulted in)
        rows = min(_CHUNK, time)
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
        g_gi = torch.empty(
            (batch, time, three_h) if bf else (time, batch, three_h), dtype=n.dtype, device=n.device
        )
        g_gi_l = (g_gi.transpose(0, 1) if bf else g_gi).unbind(0)
        dy = torch.empty(
            batch, 3, hid, dtype=n.dtype, device=n.device
        )  # the norm's output gradient [d y_n, dr, dz]
        sums = n.new_zeros(2, three_h)  # gradients of the gain and the bias
        g_u = hs.new_zeros(three_h, hid) if ctx.needs_input_grad[2] else None
        wgrad = None if g_u is None else _ChunkedWeightGrad(g_u, hp)
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

        dh0 = _reverse(go, grad_ht, keep, step, chunk)
        if wgrad is not None:
            wgrad.flush()
        needs = ctx.needs_input_grad
        return (
            g_gi if needs[0] else None,
            dh0 if needs[1] else None,
            None if g_u is None else _rzn(g_u, hid),
            _rzn(sums[0], hid) if needs[3] else None,
            _rzn(sums[1], hid) if beta is not None and needs[4] else None,
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
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`ln_gru` (the fallback and the reference)."""
    mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
    three_h = gi_tm.size(-1)
    two = 2 * (three_h // 3)

    def step(h: Tensor, g: Tensor) -> Tensor:
        gh = torch.nn.functional.layer_norm(
            torch.nn.functional.linear(h, weight_hh), (three_h,), gamma_hh, bias_hh, _LN_EPS
        )
        r, z = torch.sigmoid(g[:, :two] + gh[:, :two]).chunk(2, dim=-1)
        cand = torch.tanh(torch.addcmul(g[:, two:], r, gh[:, two:]))
        return torch.lerp(cand, h, z)

    return _autograd_loop(step, h0, mask_tm, batch_first, gi_tm)


def ln_gru(
    gi: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
    gamma_hh: Tensor,
    bias_hh: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Reset-after GRU with layer norm on the recurrent pre-activation (haste's ``LayerNormGRU``), keep form.

    ``gh = LN(h U^T; γ) + c`` (one norm over all 3H, eps 1e-5); ``r, z = σ(gi_rz + gh_rz)``;
    ``n = tanh(gi_n + r ⊙ gh_n)``; ``h = (1 − z) ⊙ n + z ⊙ h``. The input side (``LN(W x; γ_x) + b``)
    comes in ``gi``, computed for every step by the caller.

    Args:
        gi: input pre-activations ``[B, T, 3H]`` (``[T, B, 3H]``), blocks ``r, z, n``.
        h0: initial state ``[B, H]``.
        weight_hh: ``U`` ``[3H, H]``.
        gamma_hh: the recurrent norm's gain ``[3H]``.
        bias_hh: ``c`` ``[3H]``, added after the norm, or ``None``.
        mask: optional bool step mask ``[B, T, 1]`` (``[T, B, 1]``), true on real steps.
        batch_first: layout of ``gi``, ``mask`` and the output.

    Returns:
        ``(output [B, T, H], h_T [B, H])``.
    """
    _check(gi, h0, 3, batch_first, mask)
    return _dispatch(_LNGRU, ln_gru_loop, (gi, h0, weight_hh, gamma_hh, bias_hh), mask, batch_first)


# -- (c) MGU (Zhou et al. 2016), write convention ------------------------------------------------------


class _MGU(torch.autograd.Function):
    # Blocked in both directions: the input side plus its bias of _CHUNK steps at a time goes into small
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
        batch_first: bool,
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
        time, batch, _ = gi_tm.shape
        hid = h0.size(1)
        rows = min(_CHUNK, time)
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
            _tanh_of_half_(nt, minus_one)
            torch.lerp(h, nt, ft, out=out)  # (1 - f) h + f h~

        hs = _recur(h0, n, mask_tm, step, block)
        ctx.save_for_backward(weight_f, weight_h)
        ctx.flags = (bias_f is not None, bias_h is not None)
        return _finish(ctx, hs, mask_tm, batch_first, f, n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        weight_f, weight_h = ctx.saved_tensors
        hs, mask, f, n = ctx.buffers
        bf = ctx.batch_first
        has_bf, has_bh = ctx.flags
        time, batch, hid = n.shape
        go = _grad_out(grad_out, n, mask, bf)
        hp = hs[:time]
        needs = ctx.needs_input_grad
        rows = min(_CHUNK, time)
        q = n.new_empty(rows, batch, 2, hid)  # d h / d [f-pre via the update, candidate-pre]
        a_f2 = n.new_empty(rows, batch, hid)  # d (f h) / d f-pre
        keep = n.new_empty(rows, batch, hid)
        fh = n.new_empty(rows, batch, hid)
        d = n.new_empty(rows, batch, 2, hid)  # slots [df, dn]
        dfh = n.new_empty(batch, hid)
        g_gi = n.new_empty((batch, time, 2 * hid) if bf else (time, batch, 2 * hid)) if needs[0] else None
        g_gi_tm = _time_major(g_gi, bf)
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
            if has_bf or has_bh:
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

        dh0 = _reverse(go, grad_ht, keep, step, chunk, block_keep=True)
        return (
            g_gi,
            dh0 if needs[1] else None,
            g_uf,
            d_sum[:hid] if has_bf and needs[3] else None,
            g_uh,
            d_sum[hid:] if has_bh and needs[5] else None,
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
    *,
    batch_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`mgu` (the fallback and the reference)."""
    mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
    hid = h0.size(1)

    def step(h: Tensor, g: Tensor) -> Tensor:
        fg = torch.sigmoid(g[:, :hid] + torch.nn.functional.linear(h, weight_f, bias_f))
        cand = torch.tanh(g[:, hid:] + torch.nn.functional.linear(fg * h, weight_h, bias_h))
        return (1 - fg) * h + fg * cand

    return _autograd_loop(step, h0, mask_tm, batch_first, gi_tm)


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
    return _dispatch(_MGU, mgu_loop, (gi, h0, weight_f, bias_f, weight_h, bias_h), mask, batch_first)


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
        mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
        gi_l = gi_tm.unbind(0)

        def step(t: int, h: Tensor, out: Tensor) -> None:
            torch.addcmul(gi_l[t], weight, h, out=out)
            out.relu_()

        hs = _recur(h0, gi_tm, mask_tm, step)
        ctx.save_for_backward(weight)
        return _finish(ctx, hs, mask_tm, batch_first)

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
    mask_tm, (gi_tm,) = _inputs(batch_first, mask, gi)
    return _autograd_loop(lambda h, g: torch.relu(g + weight * h), h0, mask_tm, batch_first, gi_tm)


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
    return _dispatch(_IndRNN, indrnn_loop, (gi, h0, weight), mask, batch_first)


class _LinearRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, a: Tensor, b: Tensor, h0: Tensor | None, mask: Tensor | None, batch_first: bool
    ) -> tuple[Tensor, Tensor]:
        mask_tm, (a_tm, b_tm) = _inputs(batch_first, mask, a, b)
        if mask_tm is not None:
            # a padding step keeps the state: a = 1, b = 0 there
            a_tm = torch.where(mask_tm, a_tm, 1.0)
            b_tm = torch.where(mask_tm, b_tm, 0.0)
        a_l, b_l = a_tm.unbind(0), b_tm.unbind(0)

        def step(t: int, h: Tensor, out: Tensor) -> None:
            torch.addcmul(b_l[t], a_l[t], h, out=out)

        hs = _recur(h0, b_tm, None, step)
        return _finish(ctx, hs, mask_tm, batch_first, a_tm)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_ht: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, mask, a_tm = ctx.buffers
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
        return _grad_in(g_a, bf), _grad_in(g_b, bf), g_h0, None, None


def linear_recurrence_loop(
    a: Tensor, b: Tensor, h0: Tensor | None = None, mask: Tensor | None = None, *, batch_first: bool = True
) -> tuple[Tensor, Tensor]:
    """Plain autograd loop of :func:`linear_recurrence` (the fallback and the reference)."""
    mask_tm, (a_tm, b_tm) = _inputs(batch_first, mask, a, b)
    h = torch.zeros_like(b_tm[0]) if h0 is None else h0
    return _autograd_loop(lambda h_, a_t, b_t: a_t * h_ + b_t, h, mask_tm, batch_first, a_tm, b_tm)


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
    _check_pair(a, b, h0, mask, batch_first, "a", "b")
    return _dispatch(_LinearRecurrence, linear_recurrence_loop, (a, b, h0), mask, batch_first)


class _MinGRU(torch.autograd.Function):
    # Blocked in both directions: the gate σ(k) of _CHUNK steps at a time goes into a small reused
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
    mask_tm, (k_tm, c_tm) = _inputs(batch_first, mask, k, cand)
    zb = k.new_empty(min(_CHUNK, c_tm.size(0)), c_tm.size(1), c_tm.size(2))
    c_l, z_l = c_tm.unbind(0), zb.unbind(0)
    base = [0]

    def block(lo: int, hi: int) -> None:
        base[0] = lo
        _min_gru_gate(k_tm, mask_tm, lo, hi, zb)

    def step(t: int, h: Tensor, out: Tensor) -> None:
        torch.lerp(h, c_l[t], z_l[t - base[0]], out=out)  # (1 - z) h + z h~

    hs = _recur(h0, c_tm, None, step, block)
    return _finish(ctx, hs, mask_tm, batch_first)


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
    _, (k_tm, c_tm) = _inputs(bf, None, k, cand)
    go = _grad_out(grad_out, hs[1:], mask, bf)
    gk_tm, gc_tm = _time_major(g_k, bf), _time_major(g_c, bf)
    rows = min(_CHUNK, time)
    zb, kb, gb, tmp = (k.new_empty(rows, hs.size(1), hs.size(2)) for _ in range(4))
    go_l = go.unbind(0)
    # carry = keep_lo ⊙ g_lo of the block after, the recurrent term of g at its last step
    carry = grad_ht
    for hi in range(time, 0, -_CHUNK):
        lo = max(hi - _CHUNK, 0)
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
    _check_pair(k, cand, h0, mask, batch_first, "k", "cand")
    return _dispatch(_MinGRU, min_gru_loop, (k, cand, h0), mask, batch_first)


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
    _check_pair(k, cand, h0, mask, batch_first, "k", "cand")
    return _dispatch(_MinGRU, _min_gru_packed_loop, (proj, None, h0), mask, batch_first)
