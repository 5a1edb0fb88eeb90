"""What every kernel shares: the forward and reverse time loops into preallocated buffers, the autograd
reference loop, the layout conversions and the input checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

# steps per block of the blocked loops: a block's factors and gradients stay in cache
CHUNK = 16


def time_major(t: Tensor) -> Tensor:
    """A batch-first ``[B, T, ...]`` tensor as a time-major ``[T, B, ...]`` view: the loops index time."""
    return t.transpose(0, 1)


def time_major_inputs(mask: Tensor | None, *seqs: Tensor) -> tuple[Tensor | None, list[Tensor]]:
    """The step mask and the per-step sequences, all as time-major (``[T, B, ...]``) views."""
    return None if mask is None else time_major(mask), [time_major(s) for s in seqs]


def batch_first_output(hs: Tensor, mask: Tensor | None) -> Tensor:
    """``[T, B, H]`` states, time-major mask -> the ``[B, T, H]`` output (own storage), zero on padding."""
    src = time_major(hs)
    out = hs.new_empty(src.shape)
    # a copy, so an in-place edit of the output cannot corrupt the states saved for backward
    if mask is None:
        out.copy_(src)
    else:
        torch.mul(src, time_major(mask), out=out)
    return out


def forward_loop(
    h0: Tensor | None,
    like: Tensor,
    mask: Tensor | None,
    step: Callable[[int, int, Tensor, Tensor], object],
    block: Callable[[int, int], object] | None = None,
) -> Tensor:
    """The forward time loop into one preallocated ``[T + 1, B, H]`` state buffer (``hs[0] = h0``).

    ``step(t, i, h_prev, h_next)`` writes step ``t``'s new state into ``h_next`` (a view of the buffer;
    ``i`` is ``t``'s row in its block); a padding step then keeps the previous state. ``like`` is any
    time-major ``[T, B, H]`` tensor.
    ``block(lo, hi)``, if given, runs before each block of :data:`CHUNK` steps ``lo <= t < hi``: for
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
        if block is not None and t % CHUNK == 0:
            block(t, min(t + CHUNK, time))
        step(t, t % CHUNK, hs_l[t], hs_l[t + 1])
        if masks is not None:
            torch.where(masks[t], hs_l[t + 1], hs_l[t], out=hs_l[t + 1])
    return hs


def finish_forward(ctx: Any, hs: Tensor, mask: Tensor | None, *buffers: Any) -> tuple[Tensor, Tensor]:
    """Keep what the backward needs on ``ctx``; return ``(output, h_T)`` from the state buffer."""
    ctx.buffers = (hs, mask, *buffers)
    return batch_first_output(hs[1:], mask), hs[hs.size(0) - 1].clone()


def grad_of_output(grad: Tensor | None, like: Tensor, mask: Tensor | None) -> Tensor:
    """Incoming ``[B, T, H]`` output gradient as a time-major ``[T, B, H]`` tensor, zero on padding."""
    if grad is None:
        return torch.zeros_like(like)
    # any strides will do: the loops read it one step at a time
    d_out = time_major(grad)
    return d_out * mask if mask is not None else d_out


def reverse_loop(
    go: Tensor,
    grad_ht: Tensor | None,
    keep: Tensor,
    step: Callable[[int, int, Tensor, Tensor], object],
    chunk: Callable[[int, int, bool], object] | None = None,
    block_keep: bool = False,
) -> Tensor:
    """The reverse time loop of a gated recurrence; returns the gradient of ``h0``.

    From ``dh_{T-1} = go_{T-1} + grad_hT`` it runs ``dh_{t-1} = go_{t-1} + keep_t ⊙ dh_t + (...)``,
    where ``step(t, i, dh_t, acc)`` (``i``: ``t``'s row in its block) fills the kernel's per-step gradient
    slots from ``dh_t`` and adds its
    recurrent terms (matmuls through ``U``) into ``acc``, which already holds the first two terms.
    ``chunk(lo, hi, before)``, if given, runs before and after each block of :data:`CHUNK` steps
    ``lo <= t < hi`` (latest block first): for per-block factors and weight gradients that stay in cache.
    ``keep`` is ``[T, B, H]``, or with ``block_keep`` a ``[CHUNK, B, H]`` buffer that ``chunk`` fills
    for each block (step ``t`` reads row ``t - lo``).
    """
    time = go.size(0)
    dh = go[time - 1] if grad_ht is None else go[time - 1] + grad_ht
    bufs = (torch.empty_like(dh), torch.empty_like(dh))
    go_l, k_l = go.unbind(0), keep.unbind(0)
    for hi in range(time, 0, -CHUNK):
        lo = max(hi - CHUNK, 0)
        off = lo if block_keep else 0
        if chunk is not None:
            chunk(lo, hi, True)
        for t in range(hi - 1, lo - 1, -1):
            nxt = bufs[t % 2]
            if t > 0:
                torch.addcmul(go_l[t - 1], dh, k_l[t - off], out=nxt)
            else:
                torch.mul(dh, k_l[t - off], out=nxt)
            step(t, t - lo, dh, nxt)
            dh = nxt
        if chunk is not None:
            chunk(lo, hi, False)
    return dh


def repeat_rows(bias: Tensor | None, batch: int) -> Tensor | None:
    """``bias`` repeated for every row of a batch, contiguous: ``addmm(out=)`` starts from a plain copy
    of it (a broadcast copy of a vector measured about ten times slower per step here).

    Read only: at ``batch == 1`` the result is ``bias`` itself (``contiguous()`` returns a view).
    """
    return None if bias is None else bias.expand(batch, bias.size(0)).contiguous()


def tanh_of_half_(t: Tensor, minus_one: Tensor | None = None) -> Tensor:
    """``tanh(t / 2)`` in place, as ``2σ(t) − 1``: torch's CPU ``tanh`` costs about four sigmoids.

    The kernels get ``t = 2x`` for free from the step's ``addmm`` (``beta = alpha = 2``).
    ``minus_one``: a 0-d ``-1`` of ``t``'s dtype and device made once per sequence (not once a step).
    """
    t.sigmoid_()
    return torch.add(t.new_full((), -1.0) if minus_one is None else minus_one, t, alpha=2, out=t)


class ChunkedWeightGrad:
    """``out += Σ_t d_t^T x_t`` over a reverse loop, one matmul per chunk of steps.

    The per-step ``d_t`` go into a small buffer (a few steps, in cache and never page-faulted afresh)
    and meet ``x`` of the same steps in one ``addmm`` when it is full: nearly the speed of a single
    matmul over all steps without a ``[T, B, rows]`` buffer.
    """

    def __init__(self, out: Tensor, x: Tensor) -> None:
        self.out, self.x, self.chunk = out, x, CHUNK
        self.buf = x.new_empty(CHUNK, x.size(1), out.size(0))
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


def autograd_loop(
    step: Callable[..., Tensor], h0: Tensor, mask: Tensor | None, *seqs: Tensor
) -> tuple[Tensor, Tensor]:
    """Reference loop under autograd: ``h = step(h, *seqs[:, t])`` over batch-first ``seqs`` and ``mask``."""
    mask, seqs_tm = time_major_inputs(mask, *seqs)
    h = h0
    outs = []
    for t, xs in enumerate(zip(*(s.unbind(0) for s in seqs_tm), strict=True)):
        new = step(h, *xs)
        if mask is not None:
            new = torch.where(mask[t], new, h)
            outs.append(new * mask[t])
        else:
            outs.append(new)
        h = new
    return torch.stack(outs, 1), h


def check_inputs(gi: Tensor, h0: Tensor, blocks: int, mask: Tensor | None) -> None:
    if gi.dim() != 3 or h0.dim() != 2:
        raise ValueError(f"gi must be 3-d and h0 2-d, got {list(gi.shape)} and {list(h0.shape)}")
    b, t = gi.size(0), gi.size(1)
    h = h0.size(1)
    if gi.size(2) != blocks * h or h0.size(0) != b:
        raise ValueError(
            f"gi must be [B, T, {blocks}*H] and h0 [B, H]; got gi {list(gi.shape)} with h0 {list(h0.shape)}"
        )
    if mask is not None:
        want = (b, t, 1)
        if tuple(mask.shape) != want or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {list(want)}, got {mask.dtype} {list(mask.shape)}"
            )


def check_pair(a: Tensor, b: Tensor, h0: Tensor | None, mask: Tensor | None, na: str, nb: str) -> None:
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(
            f"{na} and {nb} must be 3-d tensors of the same shape, got {list(a.shape)} and {list(b.shape)}"
        )
    if h0 is not None:
        check_inputs(b, h0, 1, mask)
