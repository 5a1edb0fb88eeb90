"""Cross-entropy over a linear decoder in one autograd function: ``cross_entropy(x W^T + b, targets)``.

A word-level language model spends most of a CPU training step on its decoder: ``[tokens, vocab]`` logits,
their log-softmax and the gradients (28 MB each at PTB size). Two things make the usual
``F.cross_entropy(F.linear(x, W, b), t)`` slower than it needs to be:

- The logits' row length is the vocabulary size. When a row's bytes are not a multiple of 64 (PTB through
  the zoo's tokenizer: 10,002 words), the CPU matmul writing them ran at about two thirds of its speed
  (docs/benchmarks.md, PTB section: 50-60 ms against 33 ms for ``[700, 200] x [200, 10002]``). Here the
  logits go into a buffer whose rows are padded to 64 bytes; the padding columns hold ``-inf``, so the
  softmax gives them probability 0 and the result does not change.
- Autograd keeps the logits, the log-probabilities, a zero-filled gradient of the log-probabilities and
  the gradient of the logits, and the backward reads and writes each. Here only the softmax is kept, and
  the backward turns it into the gradient in place (minus one at each target): no vocabulary-sized
  buffer is allocated or filled there, and no ``exp`` pass over it runs again.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

_ROW_ALIGN_BYTES = 64


def _padded_columns(columns: int, element_size: int) -> int:
    """``columns`` rounded up so that a row of that many elements fills whole 64-byte lines."""
    step = max(1, _ROW_ALIGN_BYTES // element_size)
    return -(-columns // step) * step


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``x W^T + b`` over the rows whose target is not ``ignore_index``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, ignore_index: int
    ) -> Tensor:
        rows, classes = x.size(0), weight.size(0)
        padded = _padded_columns(classes, x.element_size())
        buffer = x.new_empty(rows, padded)
        logits = buffer[:, :classes]  # a strided view: the matmul writes rows of padded length
        if bias is None:
            torch.mm(x, weight.t(), out=logits)
        else:
            torch.addmm(bias, x, weight.t(), out=logits)
        if padded > classes:
            buffer[:, classes:].fill_(float("-inf"))
        probs = torch.softmax(buffer, dim=1)
        ignored = targets == ignore_index
        picked = targets.masked_fill(ignored, 0).unsqueeze(1)  # [rows, 1]
        target_probs = probs.gather(1, picked).squeeze(1)
        nll = target_probs.log().neg_()
        # -log p loses precision where p is subnormal (and is inf where it underflows to 0); those rows,
        # rare, take log-sum-exp minus the target's logit from the logits instead.
        tiny = (target_probs < torch.finfo(probs.dtype).tiny ** 0.5) & ~ignored
        if bool(tiny.any()):
            low = tiny.nonzero().squeeze(1)
            low_logits = buffer.index_select(0, low)
            exact = torch.logsumexp(low_logits, 1) - low_logits.gather(1, picked[low]).squeeze(1)
            nll = nll.index_copy(0, low, exact)
        del buffer, logits
        ctx.save_for_backward(x, weight, probs, picked, ignored)
        ctx.has_bias = bias is not None
        ctx.classes = classes
        return nll.masked_fill_(ignored, 0.0).sum()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight, probs, picked, ignored = ctx.saved_tensors
        # The saved probabilities become d loss / d logits in place: softmax minus one-hot. A second
        # backward through the same graph then fails autograd's version check instead of reading them.
        grad = probs.scatter_add_(1, picked, probs.new_full(picked.shape, -1.0))
        ignored_rows = ignored.nonzero().squeeze(1)
        if ignored_rows.numel():
            grad.index_fill_(0, ignored_rows, 0.0)
        grad = grad[:, : ctx.classes]
        scale = grad_out.to(grad.dtype)
        # grad_out is one number: scale the small results, not the [rows, classes] gradient.
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad, weight).mul_(scale)
        want_b = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1] and want_b:
            # The bias gradient (column sums of grad) comes out of the weight gradient's matmul as one more
            # column, from x with a column of ones, so no separate pass reads the [rows, classes] gradient
            # again; the columns are padded to 64 bytes (201 of them made the matmul a third slower). Scaling
            # out of place writes contiguous gradients (autograd would copy a strided one anyway).
            features = x.size(1)
            wide = x.new_zeros(x.size(0), _padded_columns(features + 1, x.element_size()))
            wide[:, :features] = x
            wide[:, features] = 1.0
            both = torch.mm(grad.t(), wide)
            grad_w, grad_b = both[:, :features].mul(scale), both[:, features].mul(scale)
        elif ctx.needs_input_grad[1]:
            grad_w = torch.mm(grad.t(), x).mul_(scale)
        elif want_b:
            grad_b = grad.sum(0).mul_(scale)
        return grad_x, grad_w, grad_b, None, None


def linear_cross_entropy(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    ignore_index: int = -100,
    reduction: str = "sum",
) -> Tensor:
    """``F.cross_entropy(F.linear(x, weight, bias), targets, ...)``, with less memory traffic on CPU.

    The backward pass may run once per forward (it reuses a saved buffer). Off the CPU (where it has not
    been measured), under autocast, or for an empty batch, this is the plain ``F.cross_entropy`` over
    ``F.linear``.

    Args:
        x: ``[rows, features]``.
        weight: ``[classes, features]`` (a decoder's or a tied embedding's matrix).
        bias: ``[classes]`` or ``None``.
        targets: ``[rows]`` class ids in ``[0, classes)``, or ``ignore_index`` for rows not counted.
        ignore_index: the target of rows that add nothing to the loss or the gradients.
        reduction: ``"sum"`` over the counted rows, or ``"mean"`` over them.

    Returns:
        The loss, a scalar.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if x.dim() != 2 or targets.shape != x.shape[:1]:
        raise ValueError(
            f"linear_cross_entropy takes x [rows, features] and targets [rows]; got x {list(x.shape)}, "
            f"targets {list(targets.shape)} (flatten batch and time first)"
        )
    if x.device.type != "cpu" or x.size(0) == 0 or torch.is_autocast_enabled("cpu"):
        return F.cross_entropy(
            F.linear(x, weight, bias), targets, ignore_index=ignore_index, reduction=reduction
        )
    counted = targets != ignore_index
    out_of_range = counted & ((targets < 0) | (targets >= weight.size(0)))
    if bool(out_of_range.any()):  # a target in the padding columns would read -inf, not fail
        bad = targets[out_of_range][0]
        raise ValueError(
            f"target {int(bad)} is out of range for {weight.size(0)} classes (targets must be in "
            f"[0, {weight.size(0)}) or equal ignore_index={ignore_index})"
        )
    loss = _LinearCrossEntropy.apply(x, weight, bias, targets, ignore_index)
    assert isinstance(loss, Tensor)
    if reduction == "mean":
        return loss / counted.sum()
    return loss
