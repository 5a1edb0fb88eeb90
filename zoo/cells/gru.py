"""GRU (Cho et al. 2014, arXiv:1406.1078): the fused torch/cuDNN form and the paper's reset-before form."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells._fused import FusedLayer
from zoo.cells._prepared import PreparedLoopLayer
from zoo.cells.base import Gates, State, uniform_
from zoo.cells.kernels import gru_reset_before
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


@register_cell("gru_cho", paper=CHO_2014 + " (v3; reset before the recurrent matmul)")
class GRUCho(PreparedLoopLayer):
    """Gated recurrent unit as the paper writes it (Cho et al. 2014, arXiv:1406.1078 v3): *reset before*.

    Equations (*keep* convention: ``z`` is the share of the old state that is kept)::

        r   = σ(W_r x_t + b_r + U_r h_{t-1} + c_r)
        z   = σ(W_z x_t + b_z + U_z h_{t-1} + c_z)
        n   = tanh(W_n x_t + b_n + U_n (r ⊙ h_{t-1}) + c_n)
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    The reset gate scales the state *before* the recurrent matmul, so this is a different function from
    ``gru`` (torch/cuDNN, reset after): with the same weights the two differ, and no reordering of weights
    makes them equal. Per step it costs one ``[H -> 2H]`` matmul (r, z) and one ``[H -> H]`` matmul on
    ``r ⊙ h``, the same flops as ``gru``.

    Weights use torch's layout and names (as ``torch.nn.GRUCell``): ``weight_ih`` ``[3H, I]`` and
    ``weight_hh`` ``[3H, H]`` with rows r, z, n; ``bias_ih`` (``b``) and ``bias_hh`` (``c``), ``[3H]`` each.
    A ``torch.nn.GRU``'s ``weight_ih_l0``/``weight_hh_l0``/``bias_ih_l0``/``bias_hh_l0`` load one to one
    (drop the ``_l0``); the loaded cell then computes the reset-before function with them. ``c`` is kept
    for that copy although here every bias sits outside the reset product, so only ``b + c`` matters.

    Parameters: ``3(HI + H² + 2H)``. Gates inspected: update (z), reset (r).
    """

    paper = CHO_2014
    gate_names = ("update", "reset")

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        h3 = 3 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h3, input_size))
        self.weight_hh = nn.Parameter(torch.empty(h3, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(h3))
        self.bias_hh = nn.Parameter(torch.empty(h3))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's GRU initialisation: every weight and bias from ``U(-1/sqrt(H), 1/sqrt(H))``."""
        uniform_(list(self.parameters()), self.hidden_size)

    def project(self, x: Tensor) -> Tensor:
        """``W x + b + c`` for every step, ``[batch, time, 3H]`` (r, z, n): every bias is additive here."""
        return nn.functional.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def prepare(self) -> tuple[Tensor, ...]:
        """``(U_rz^T [H, 2H], U_n^T [H, H])``, views of ``weight_hh``."""
        u_rz, u_n = self.weight_hh.split([2 * self.hidden_size, self.hidden_size])
        return u_rz.t(), u_n.t()

    def kernel(self, proj: Tensor, h0: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The reset-before GRU kernel; ``proj`` already holds both biases (all additive in this form)."""
        u_rz, u_n = self.weight_hh.split([2 * self.hidden_size, self.hidden_size])
        return gru_reset_before(proj, h0, u_n, None, u_rz, None, mask)

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        assert isinstance(state, Tensor)
        u_rz, u_n = self.step_tensors()
        p_rz, p_n = p_t.split([2 * self.hidden_size, self.hidden_size], dim=-1)
        # in place on the fresh addmm outputs: one allocation less per activation, same graph
        r, z = torch.addmm(p_rz, state, u_rz).sigmoid_().chunk(2, dim=-1)
        n = torch.addmm(p_n, r * state, u_n).tanh_()
        h = torch.lerp(n, state, z)  # (1 - z) * n + z * h
        return h, h, {"update": z, "reset": r}
