"""Light GRU (Ravanelli, Brakel, Omologo & Bengio 2018, arXiv:1803.10225): no reset gate, ReLU candidate."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from zoo.cells.base import Gates, LoopLayer, State, glorot_orthogonal_, step_mask
from zoo.cells.registry import register_cell

RAVANELLI_2018 = "Ravanelli et al. 2018, Light Gated Recurrent Units for Speech Recognition, arXiv:1803.10225"
NORMS = ("layer", "batch", "none")


@register_cell("li_gru", paper=RAVANELLI_2018)
class LightGRU(LoopLayer):
    """Light GRU (Li-GRU): a GRU without reset gate, with a ReLU candidate and a normalised input projection.

    Equations (rows ``a`` then ``z`` in ``weight_ih``/``weight_hh``; *keep* convention)::

        [a_t, k_t] = Norm(W x_t) + U h_{t-1}
        z_t  = σ(k_t)
        h̃_t = ReLU(a_t)
        h_t  = z_t ⊙ h_{t-1} + (1 − z_t) ⊙ h̃_t

    Option ``norm`` (over the 2H vector ``W x_t``):

    - ``"layer"`` (default): layer norm per step with gain and shift. It sees one step of one sequence, so
      padding cannot leak into real steps and a padded batch equals each sequence alone in any mode.
    - ``"batch"``: batch norm as in the paper, with gain and shift. In training the statistics are taken
      over the real (non-padded) steps of the batch and the running statistics are updated (momentum 0.1,
      unbiased variance, as ``nn.BatchNorm1d``); in eval the running statistics are used. In training a
      sequence's output therefore depends on the rest of its batch, as with any batch norm.
    - ``"none"``: no norm; a bias of 2H takes the place of the norm's shift.

    ``U`` has no bias (the norm's shift is the bias). Paper: Ravanelli, Brakel, Omologo & Bengio 2018,
    arXiv:1803.10225. Parameters: ``2H(I + H)`` plus the norm's affine, ``4H`` for ``"layer"`` and
    ``"batch"`` (``2H`` for ``"none"``). Initialisation: ``W`` Glorot-uniform, each gate's block of ``U``
    orthogonal (as the authors' pytorch-kaldi code), gains one, shifts zero. Gates inspected: update (z).
    """

    paper = RAVANELLI_2018
    gate_names = ("update",)

    def __init__(self, input_size: int, hidden_size: int, norm: str = "layer") -> None:
        super().__init__(input_size, hidden_size)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {norm!r}")
        self.norm_kind = norm
        h2 = 2 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h2, input_size))
        self.weight_hh = nn.Parameter(torch.empty(h2, hidden_size))
        self.norm: nn.Module | None = None
        self.bias: nn.Parameter | None = None
        if norm == "layer":
            self.norm = nn.LayerNorm(h2)
        elif norm == "batch":
            self.norm = nn.BatchNorm1d(h2)
        else:
            self.bias = nn.Parameter(torch.empty(h2))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform ``W``, orthogonal blocks of ``U``, unit gains, zero shifts, fresh statistics."""
        glorot_orthogonal_(self.weight_ih, self.weight_hh, 2)
        with torch.no_grad():
            if isinstance(self.norm, nn.BatchNorm1d | nn.LayerNorm):
                self.norm.reset_parameters()
            if self.bias is not None:
                self.bias.zero_()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, norm={self.norm_kind!r}"

    def project(self, x: Tensor) -> Tensor:
        """``Norm(W x)`` for every step: one matmul, one norm (batch norm over every step of ``x``)."""
        return self.project_batch(x, None)

    def project_batch(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """``Norm(W x)`` for every step; batch norm takes its statistics over the real steps only."""
        wx = F.linear(x, self.weight_ih)
        if self.bias is not None:
            return wx + self.bias
        if isinstance(self.norm, nn.LayerNorm):
            return self.norm(wx)
        assert isinstance(self.norm, nn.BatchNorm1d)
        return self._batch_norm(wx, lengths)

    def _batch_norm(self, wx: Tensor, lengths: Tensor | None) -> Tensor:
        bn = self.norm
        assert isinstance(bn, nn.BatchNorm1d) and bn.running_mean is not None and bn.running_var is not None
        flat = wx.reshape(-1, wx.size(-1))
        momentum = bn.momentum if bn.momentum is not None else 0.1
        if not self.training or lengths is None:
            out = F.batch_norm(
                flat, bn.running_mean, bn.running_var, bn.weight, bn.bias, self.training, momentum, bn.eps
            )
            return out.view_as(wx)
        # statistics over the real steps only; padded steps are normalised with them but never used
        mask = step_mask(lengths, wx.size(1), wx.device).to(wx.dtype)  # [B, T, 1]
        count = mask.sum()
        mean = (wx * mask).sum((0, 1)) / count
        var = ((wx - mean).square() * mask).sum((0, 1)) / count
        with torch.no_grad():
            unbiased = var * (count / (count - 1).clamp(min=1))
            bn.running_mean.lerp_(mean.detach(), momentum)
            bn.running_var.lerp_(unbiased.detach(), momentum)
        return (wx - mean) * torch.rsqrt(var + bn.eps) * bn.weight + bn.bias

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        assert isinstance(state, Tensor)
        pre = torch.addmm(p_t, state, self.weight_hh.t())
        a, k = pre.chunk(2, dim=-1)
        z = torch.sigmoid(k)
        h = torch.lerp(torch.relu(a), state, z)  # z ⊙ h + (1 − z) ⊙ ReLU(a)
        return h, h, {"update": z}
