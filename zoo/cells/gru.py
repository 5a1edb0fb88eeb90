"""GRU (Cho et al. 2014, arXiv:1406.1078): the fused torch/cuDNN form and the paper's reset-before form."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells._fused import FusedLayer
from zoo.cells.base import Gates, State
from zoo.cells.registry import register_cell

CHO_2014 = "Cho et al. 2014, Learning Phrase Representations using RNN Encoder-Decoder, arXiv:1406.1078"


@register_cell("gru", paper=CHO_2014 + " (v1; cuDNN/torch reset-after form)", fused=True)
class GRU(FusedLayer):
    """Gated recurrent unit, *reset after* the recurrent matmul (cuDNN, torch, Keras default), on ``nn.GRU``.

    Equations (torch gate order r, z, n in ``weight_ih_l0``/``weight_hh_l0`` rows; *keep* convention)::

        r = σ(W_r x_t + b_r + U_r h_{t-1} + c_r)
        z = σ(W_z x_t + b_z + U_z h_{t-1} + c_z)
        n = tanh(W_n x_t + b_n + r ⊙ (U_n h_{t-1} + c_n))
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Parameters: ``3(HI + H² + 2H)``. Weights copy one to one to ``torch.nn.GRU``.
    Initialisation: torch's, ``U(-1/sqrt(H), 1/sqrt(H))``. Gates inspected: update (z), reset (r).
    """

    torch_module = nn.GRU
    paper = CHO_2014
    gate_names = ("update", "reset")

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self._make()

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        assert isinstance(state, Tensor)
        gh = self.recurrent_projection(state)
        xr, xz, xn = p_t.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = torch.lerp(n, state, z)  # (1 - z) * n + z * h
        return h, h, {"update": z, "reset": r}

    def recur(self, p_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, new_state, _ = self.recur_with_gates(p_t, state)
        return h, new_state
