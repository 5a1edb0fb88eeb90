"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016, arXiv:1603.09420): a GRU with one gate."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells._prepared import PreparedLoopLayer
from zoo.cells.base import Gates, State, uniform_
from zoo.cells.kernels import mgu
from zoo.cells.registry import register_cell

ZHOU_2016 = "Zhou, Wu, Zhang & Zhou 2016, Minimal Gated Unit for Recurrent Neural Networks, arXiv:1603.09420"


@register_cell("mgu", paper=ZHOU_2016)
class MGU(PreparedLoopLayer):
    """Minimal gated unit: the forget gate ``f`` does the work of both of the GRU's gates.

    Equations (*write* convention, as the paper: ``f`` is the share of the new candidate written)::

        f   = σ(W_f x_t + U_f h_{t-1} + b_f)
        h̃   = tanh(W_h x_t + U_h (f ⊙ h_{t-1}) + b_h)
        h_t = (1 − f) ⊙ h_{t-1} + f ⊙ h̃

    (Flax once shipped this gate reversed, ``f ⊙ h + (1 − f) ⊙ h̃``; that is a different
    parametrisation, not this paper's cell.) Per step: two ``[H -> H]`` matmuls, one gate.

    Weights: ``weight_ih`` ``[2H, I]`` and ``weight_hh`` ``[2H, H]`` with rows f, h (the gate, then the
    candidate), ``bias`` ``[2H]`` rows f, h. Parameters: ``2(HI + H² + H)``.
    Initialisation: torch's RNN one, ``U(-1/sqrt(H), 1/sqrt(H))``. Gates inspected: forget (f).
    """

    paper = ZHOU_2016
    gate_names = ("forget",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        h2 = 2 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h2, input_size))
        self.weight_hh = nn.Parameter(torch.empty(h2, hidden_size))
        self.bias = nn.Parameter(torch.empty(h2))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's RNN initialisation: every weight and bias from ``U(-1/sqrt(H), 1/sqrt(H))``."""
        uniform_(list(self.parameters()), self.hidden_size)

    def project(self, x: Tensor) -> Tensor:
        """``W x + b`` for every step, ``[batch, time, 2H]`` (f, h)."""
        return nn.functional.linear(x, self.weight_ih, self.bias)

    def prepare(self) -> tuple[Tensor, ...]:
        """``(U_f^T, U_h^T)``: views of ``weight_hh``."""
        u_f, u_h = self.weight_hh.chunk(2)
        return u_f.t(), u_h.t()

    def kernel(self, proj: Tensor, h0: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The MGU kernel; ``proj`` already holds both biases."""
        u_f, u_h = self.weight_hh.chunk(2)
        return mgu(proj, h0, u_f, None, u_h, None, mask)

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        assert isinstance(state, Tensor)
        u_f, u_h = self.step_tensors()
        p_f, p_h = p_t.chunk(2, dim=-1)
        # in place on the fresh addmm outputs: one allocation less per activation, same graph
        f = torch.addmm(p_f, state, u_f).sigmoid_()
        candidate = torch.addmm(p_h, f * state, u_h).tanh_()
        h = torch.lerp(state, candidate, f)  # (1 - f) * h + f * h̃
        return h, h, {"forget": f}
