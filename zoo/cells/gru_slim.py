"""GRU1, GRU2, GRU3: gate variants of the GRU (Dey & Salem 2017, arXiv:1701.05923).

Dey & Salem keep the GRU's candidate and slim down only its two gates: GRU1 drops the input from the
gates, GRU2 also drops their bias, GRU3 keeps only the bias (constant gates). Their base GRU is the
reset-before form of Chung et al. 2014 (arXiv:1412.3555), i.e. the candidate of ``gru_cho``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from zoo.cells._prepared import PreparedLoopLayer
from zoo.cells.base import Gates, State, uniform_
from zoo.cells.kernels import gru_reset_before
from zoo.cells.registry import register_cell

DEY_SALEM_2017 = (
    "Dey & Salem 2017, Gate-Variants of Gated Recurrent Unit (GRU) Neural Networks, arXiv:1701.05923"
)


class _GateVariantGRU(PreparedLoopLayer):
    """Shared body of GRU1/2/3: the reset-before candidate of ``gru_cho`` with slimmer gates.

    Candidate and update (*keep* convention, as ``gru_cho``)::

        n   = tanh(W_n x_t + U_n (r ⊙ h_{t-1}) + b_n)
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Parameters: ``weight_ih`` ``[H, I]`` (``W_n``), ``weight_hh`` ``[3H, H]`` rows r, z, n when the gates
    see the state (else ``[H, H]``, ``U_n`` only), ``bias`` ``[3H]`` rows r, z, n when the gates have a
    bias (else ``[H]``, ``b_n`` only).
    """

    paper = DEY_SALEM_2017
    gate_names = ("update", "reset")
    gates_see_state: ClassVar[bool] = True
    gates_have_bias: ClassVar[bool] = True

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * h if self.gates_see_state else h, h))
        self.bias = nn.Parameter(torch.empty(3 * h if self.gates_have_bias else h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's GRU initialisation: every weight and bias from ``U(-1/sqrt(H), 1/sqrt(H))``."""
        uniform_(list(self.parameters()), self.hidden_size)

    def project(self, x: Tensor) -> Tensor:
        """``W_n x + b_n`` for every step, ``[batch, time, H]``: the gates never see the input."""
        return nn.functional.linear(x, self.weight_ih, self.bias[-self.hidden_size :])

    def kernel(self, proj: Tensor, h0: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The reset-before GRU kernel with the gates this variant has; ``proj`` already holds ``b_n``."""
        h = self.hidden_size
        u_n = self.weight_hh[-h:] if self.gates_see_state else self.weight_hh
        u_rz = self.weight_hh[: 2 * h] if self.gates_see_state else None
        b_rz = self.bias[: 2 * h] if self.gates_have_bias else None
        return gru_reset_before(proj, h0, u_n, None, u_rz, b_rz, mask)

    def gate_values(self, h: Tensor, prepared: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """``(r, z)`` from the previous state and :meth:`prepare`'s tensors (``U_n^T`` first), each
        ``[batch, H]``, or ``[H]`` for constant gates."""
        raise NotImplementedError

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        assert isinstance(state, Tensor)
        prepared = self.step_tensors()
        r, z = self.gate_values(state, prepared)
        n = torch.addmm(p_t, r * state, prepared[0]).tanh_()  # in place on a fresh tensor
        h = torch.lerp(n, state, z)  # (1 - z) * n + z * h
        return h, h, {"update": z.expand_as(h), "reset": r.expand_as(h)}


@register_cell("gru1", paper=DEY_SALEM_2017 + " (GRU1: gates from state and bias)")
class GRU1(_GateVariantGRU):
    """GRU1 of Dey & Salem 2017 (arXiv:1701.05923): the gates see the previous state and a bias, not x.

    Equations (*keep* convention, as ``gru_cho``)::

        r   = σ(U_r h_{t-1} + b_r)
        z   = σ(U_z h_{t-1} + b_z)
        n   = tanh(W_n x_t + U_n (r ⊙ h_{t-1}) + b_n)
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Where the form comes from: Dey & Salem's GRU1 removes ``W_r x_t`` and ``W_z x_t`` from the gates of the
    reset-before GRU (Chung et al. 2014), keeping ``U h_{t-1} + b``. The paper writes the update in the
    *write* convention, ``h_t = (1 − z) ⊙ h_{t-1} + z ⊙ n``; its ``z`` is ``1 −`` ours, i.e. the same cell
    with ``U_z`` and ``b_z`` negated. The zoo uses *keep* so that GRU1 is exactly ``gru_cho`` with
    ``W_r = W_z = 0`` and a single candidate bias.

    Weights: ``weight_ih`` ``[H, I]`` = ``W_n``; ``weight_hh`` ``[3H, H]`` rows r, z, n (``gru_cho``'s
    layout); ``bias`` ``[3H]`` rows r, z, n. Parameters: ``HI + 3H² + 3H``. Gates: update (z), reset (r).
    """

    def prepare(self) -> tuple[Tensor, ...]:
        """``(U_n^T, U_rz^T, b_rz)``: views of ``weight_hh`` and ``bias``."""
        h = self.hidden_size
        u_rz, u_n = self.weight_hh.split([2 * h, h])
        return u_n.t(), u_rz.t(), self.bias[: 2 * h]

    def gate_values(self, h: Tensor, prepared: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        _, u_rz, b_rz = prepared
        r, z = torch.addmm(b_rz, h, u_rz).sigmoid_().chunk(2, dim=-1)
        return r, z


@register_cell("gru2", paper=DEY_SALEM_2017 + " (GRU2: gates from state only)")
class GRU2(_GateVariantGRU):
    """GRU2 of Dey & Salem 2017 (arXiv:1701.05923): the gates see only the previous state.

    Equations (*keep* convention, as ``gru_cho``)::

        r   = σ(U_r h_{t-1})
        z   = σ(U_z h_{t-1})
        n   = tanh(W_n x_t + U_n (r ⊙ h_{t-1}) + b_n)
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Where the form comes from: Dey & Salem's GRU2 removes both the input term and the bias from the gates
    of the reset-before GRU (Chung et al. 2014). The paper writes the update in the *write* convention
    (its ``z`` is ``1 −`` ours: ``U_z`` negated); *keep* here makes GRU2 exactly ``gru_cho`` with
    ``W_r = W_z = 0``, zero gate biases and a single candidate bias.

    Weights: ``weight_ih`` ``[H, I]`` = ``W_n``; ``weight_hh`` ``[3H, H]`` rows r, z, n; ``bias`` ``[H]``
    = ``b_n``. Parameters: ``HI + 3H² + H``. Gates: update (z), reset (r).
    """

    gates_have_bias = False

    def prepare(self) -> tuple[Tensor, ...]:
        """``(U_n^T, U_rz^T)``: views of ``weight_hh``."""
        h = self.hidden_size
        u_rz, u_n = self.weight_hh.split([2 * h, h])
        return u_n.t(), u_rz.t()

    def gate_values(self, h: Tensor, prepared: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        r, z = torch.mm(h, prepared[1]).sigmoid_().chunk(2, dim=-1)
        return r, z


@register_cell("gru3", paper=DEY_SALEM_2017 + " (GRU3: gates from a bias only)")
class GRU3(_GateVariantGRU):
    """GRU3 of Dey & Salem 2017 (arXiv:1701.05923): each gate is a learned constant, ``σ`` of a bias.

    Equations (*keep* convention, as ``gru_cho``)::

        r   = σ(b_r)
        z   = σ(b_z)
        n   = tanh(W_n x_t + U_n (r ⊙ h_{t-1}) + b_n)
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Where the form comes from: Dey & Salem's GRU3 keeps only the bias in each gate of the reset-before
    GRU (Chung et al. 2014), so the gates no longer depend on time. The paper writes the update in the
    *write* convention (its ``z`` is ``1 −`` ours: ``b_z`` negated); *keep* here makes GRU3 exactly
    ``gru_cho`` with ``W_r = W_z = 0``, ``U_r = U_z = 0`` and a single candidate bias.

    Weights: ``weight_ih`` ``[H, I]`` = ``W_n``; ``weight_hh`` ``[H, H]`` = ``U_n``; ``bias`` ``[3H]``
    rows r, z, n. Parameters: ``HI + H² + 3H``. Gates: update (z), reset (r), constant over time.
    """

    gates_see_state = False

    def prepare(self) -> tuple[Tensor, ...]:
        """``(U_n^T, σ(b_r), σ(b_z))``: the gates are constants, computed once per sequence."""
        r, z = torch.sigmoid(self.bias[: 2 * self.hidden_size]).chunk(2)
        return self.weight_hh.t(), r, z

    def gate_values(self, h: Tensor, prepared: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        return prepared[1], prepared[2]
