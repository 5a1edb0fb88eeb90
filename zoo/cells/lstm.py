"""LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000) on ``nn.LSTM``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells._fused import FusedLayer
from zoo.cells.base import Gates, State
from zoo.cells.registry import register_cell


@register_cell(
    "lstm", paper="Hochreiter & Schmidhuber 1997, Long Short-Term Memory (Neural Computation 9)", fused=True
)
class LSTM(FusedLayer):
    """Long short-term memory, torch's formulation, on the fused ``torch.nn.LSTM`` kernel (cuDNN on GPU).

    Equations (torch gate order i, f, g, o in ``weight_ih_l0``/``weight_hh_l0`` rows)::

        i, f, o = σ(W_· x_t + b_· + U_· h_{t-1} + c_·)
        g       = tanh(W_g x_t + b_g + U_g h_{t-1} + c_g)
        c_t     = f ⊙ c_{t-1} + i ⊙ g
        h_t     = o ⊙ tanh(c_t)

    State is ``(h, c)``. Parameters: ``4(HI + H² + 2H)``. Weights copy one to one to ``torch.nn.LSTM``.
    Initialisation: torch's, ``U(-1/sqrt(H), 1/sqrt(H))``. Gates inspected: input, forget, output.
    """

    torch_module = nn.LSTM
    paper = "Hochreiter & Schmidhuber 1997, Long Short-Term Memory (Neural Computation 9)"
    gate_names = ("input", "forget", "output")
    state_size = 2

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self._make()

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        h, c = state
        pre = p_t + self.recurrent_projection(h)
        i, f, g, o = pre.chunk(4, dim=-1)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        c = f * c + i * g.tanh()
        h = o * c.tanh()
        return h, (h, c), {"input": i, "forget": f, "output": o}

    def recur(self, p_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, new_state, _ = self.recur_with_gates(p_t, state)
        return h, new_state
