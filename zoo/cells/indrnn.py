"""Independently recurrent neural network (Li, Li, Cook, Zhu & Gao 2018, arXiv:1803.04831)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.cells._prepared import PreparedLoopLayer
from zoo.cells.base import State
from zoo.cells.registry import register_cell

LI_2018 = (
    "Li, Li, Cook, Zhu & Gao 2018, Independently Recurrent Neural Network (IndRNN): "
    "Building A Longer and Deeper RNN, arXiv:1803.04831"
)


@register_cell("indrnn", paper=LI_2018)
class IndRNN(PreparedLoopLayer):
    """IndRNN: every unit has its own scalar recurrence, so units only mix through the next layer.

    Equations (no gates)::

        h_t = ReLU(W x_t + u ⊙ h_{t-1} + b)

    ``u`` is a vector (``weight_hh``, ``[H]``): the recurrent matrix is ``diag(u)``, so this is
    ``torch.nn.RNN(nonlinearity="relu")`` with a diagonal ``weight_hh_l0`` and one bias. The paper bounds
    ``|u|`` to keep gradients from exploding or vanishing over T steps (``|u| ≤ 2^(1/T)`` for a memory of
    ``T`` steps with ReLU); ``recurrent_max_abs`` clips ``|u|`` to that bound inside the forward pass
    (``clamp``, so the stored ``u`` is untouched and units at the bound get no gradient through ``u``).

    Weights: ``weight_ih`` ``[H, I]`` (``W``), ``weight_hh`` ``[H]`` (``u``), ``bias`` ``[H]`` (``b``).
    Parameters: ``HI + 2H``.

    Args:
        input_size: features per step.
        hidden_size: units.
        recurrent_max_abs: clip ``u`` to ``[-recurrent_max_abs, recurrent_max_abs]`` in the forward
            pass; ``None`` (default) leaves it free.
    """

    paper = LI_2018

    def __init__(self, input_size: int, hidden_size: int, recurrent_max_abs: float | None = None) -> None:
        super().__init__(input_size, hidden_size)
        if recurrent_max_abs is not None and not (
            isinstance(recurrent_max_abs, int | float) and recurrent_max_abs > 0
        ):
            raise ValueError(
                f"recurrent_max_abs must be a positive number or None, got {recurrent_max_abs!r} "
                "(the paper's bound for a memory of T steps is 2 ** (1 / T))"
            )
        self.recurrent_max_abs = None if recurrent_max_abs is None else float(recurrent_max_abs)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``u ~ U(0, 1)`` (the paper's choice); ``W ~ U(-1/sqrt(H), 1/sqrt(H))`` (torch's RNN bound,
        so an IndRNN starts where ``nn.RNN(relu)`` with a diagonal recurrence would); ``b = 0``, as in the
        paper's ReLU setting (a positive start keeps the ReLU units alive without a bias)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            self.weight_ih.uniform_(-bound, bound)
            self.weight_hh.uniform_(0.0, 1.0)
            self.bias.zero_()

    def extra_repr(self) -> str:
        clip = "" if self.recurrent_max_abs is None else f", recurrent_max_abs={self.recurrent_max_abs}"
        return super().extra_repr() + clip

    def project(self, x: Tensor) -> Tensor:
        """``W x + b`` for every step, ``[batch, time, H]``."""
        return nn.functional.linear(x, self.weight_ih, self.bias)

    def prepare(self) -> tuple[Tensor, ...]:
        """``(u,)``, clipped to ``±recurrent_max_abs`` when that is set."""
        u: Tensor = self.weight_hh
        if self.recurrent_max_abs is not None:
            u = u.clamp(-self.recurrent_max_abs, self.recurrent_max_abs)
        return (u,)

    def recur(self, p_t: Tensor, state: State) -> tuple[Tensor, State]:
        assert isinstance(state, Tensor)
        (u,) = self.step_tensors()
        h = torch.addcmul(p_t, u, state).relu_()  # in place on a fresh tensor
        return h, h
