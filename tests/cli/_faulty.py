"""The zoo's SequenceClassifier with faults injected at chosen global steps, for the non-finite tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.tasks import SequenceClassifier


class _NanGradient(torch.autograd.Function):
    """Identity forward; NaN gradient backward (a finite loss whose gradient is not)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad * float("nan")


class FaultyClassifier(SequenceClassifier):
    """``SequenceClassifier`` whose training loss (or its gradient, or its validation output) is NaN.

    Args:
        nan_loss_steps: global steps whose training loss is NaN (with finite gradients).
        nan_grad_steps: global steps whose loss is finite but whose gradients are NaN.
        fault_rank: inject only on this global rank (``None``: every rank).
        nan_val: validation logits are NaN (so ``val_loss`` is NaN while training is finite).
        **kwargs: ``SequenceClassifier``'s arguments.
    """

    def __init__(
        self,
        nan_loss_steps: list[int] | None = None,
        nan_grad_steps: list[int] | None = None,
        fault_rank: int | None = None,
        nan_val: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.nan_loss_steps = set(nan_loss_steps or [])
        self.nan_grad_steps = set(nan_grad_steps or [])
        self.fault_rank = fault_rank
        self.nan_val = nan_val

    def _faulty(self, steps: set[int]) -> bool:
        rank_ok = self.fault_rank is None or self.fault_rank == self.global_rank
        return rank_ok and self.global_step in steps

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        logits = super().forward(input_ids, lengths)
        return logits * float("nan") if self.nan_val and not self.training else logits

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        if self._faulty(self.nan_loss_steps):
            # a NaN added as a constant: the loss is NaN but its gradients stay finite, so under DDP the
            # fault stays on this rank (a NaN gradient would reach every rank through the all-reduce)
            return loss + float("nan")
        if self._faulty(self.nan_grad_steps):
            return _NanGradient.apply(loss)
        return loss
