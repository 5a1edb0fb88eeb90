"""Layer-norm GRU, haste's ``LayerNormGRU`` (layer norm: Ba, Kiros & Hinton 2016, arXiv:1607.06450)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from zoo.cells.base import Gates, LoopLayer, State, glorot_orthogonal_
from zoo.cells.kernels import ln_gru
from zoo.cells.registry import register_cell

BA_2016 = "Ba, Kiros & Hinton 2016, Layer Normalization, arXiv:1607.06450 (GRU form of haste's LayerNormGRU)"


@register_cell("ln_gru", paper=BA_2016)
class LayerNormGRU(LoopLayer):
    """GRU, *reset after* the recurrent matmul, with layer norm on both pre-activations (haste's form).

    Equations (rows r, z, n in ``weight_ih``/``weight_hh``, as torch's ``nn.GRU``; *keep* convention)::

        [x_r, x_z, x_n] = LN(W x_t; γ_x) + b          # one norm over the whole 3H vector
        [h_r, h_z, h_n] = LN(U h_{t-1}; γ_h) + c      # a second norm, likewise over 3H
        r = σ(x_r + h_r),  z = σ(x_z + h_z)
        n = tanh(x_n + r ⊙ h_n)
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    ``LN(v; γ) = γ ⊙ (v − mean(v)) / sqrt(var(v) + 1e-5)``: a gain but no shift of its own, the biases
    ``b``/``c`` being added after the norms. Paper: Ba, Kiros & Hinton 2016, arXiv:1607.06450; the GRU
    form is haste's (lmnt-com/haste) ``LayerNormGRU``.
    Parameters: ``3H(I + H) + 12H`` (``W`` 3H×I, ``U`` 3H×H, biases ``b``, ``c`` and gains ``γ_x``, ``γ_h``
    of 3H each). Initialisation as haste: ``W`` Glorot-uniform, each gate's block of ``U`` orthogonal,
    biases zero, gains one. Gates inspected: update (z), reset (r).
    """

    paper = BA_2016
    gate_names = ("update", "reset")

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        h3 = 3 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h3, input_size))
        self.weight_hh = nn.Parameter(torch.empty(h3, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(h3))
        self.bias_hh = nn.Parameter(torch.empty(h3))
        self.gamma_ih = nn.Parameter(torch.empty(h3))
        self.gamma_hh = nn.Parameter(torch.empty(h3))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As haste: Glorot-uniform ``W``, orthogonal blocks of ``U``, zero biases, unit gains."""
        glorot_orthogonal_(self.weight_ih, self.weight_hh, 3)
        with torch.no_grad():
            self.bias_ih.zero_()
            self.bias_hh.zero_()
            self.gamma_ih.fill_(1.0)
            self.gamma_hh.fill_(1.0)

    def project(self, x: Tensor) -> Tensor:
        """``LN(W x; γ_x) + b`` for every step (one matmul, one norm)."""
        # layer_norm's own bias is added after the normalisation and gain: exactly "b after the norm"
        return F.layer_norm(F.linear(x, self.weight_ih), (3 * self.hidden_size,), self.gamma_ih, self.bias_ih)

    def kernel(self, proj: Tensor, h0: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The layer-norm GRU kernel (the recurrent norm inside it)."""
        return ln_gru(proj, h0, self.weight_hh, self.gamma_hh, self.bias_hh, mask)

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        assert isinstance(state, Tensor)
        gh = F.layer_norm(
            F.linear(state, self.weight_hh), (3 * self.hidden_size,), self.gamma_hh, self.bias_hh
        )
        two = 2 * self.hidden_size
        r, z = torch.sigmoid(p_t[:, :two] + gh[:, :two]).chunk(2, dim=-1)
        n = torch.tanh(torch.addcmul(p_t[:, two:], r, gh[:, two:]))
        h = torch.lerp(n, state, z)  # (1 − z) ⊙ n + z ⊙ h
        return h, h, {"update": z, "reset": r}
