"""Elman RNN (Elman 1990, "Finding Structure in Time") on torch's fused ``nn.RNN`` kernel."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.cells._fused import FusedLayer
from zoo.cells.base import State
from zoo.cells.registry import register_cell


class _ElmanRNN(FusedLayer):
    """``h_t = φ(W x_t + b + U h_{t-1} + c)``; parameters ``HI + H² + 2H``.

    Weights are ``nn.RNN``'s (``rnn.weight_ih_l0`` is ``W``, ``rnn.weight_hh_l0`` is ``U``), so they copy
    one to one to and from ``torch.nn.RNN``. Initialisation: torch's, ``U(-1/sqrt(H), 1/sqrt(H))``.
    """

    torch_module = nn.RNN
    paper = "Elman 1990, Finding Structure in Time (Cognitive Science 14)"
    nonlinearity = "tanh"

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self._make(nonlinearity=self.nonlinearity)

    def recur(self, p_t: Tensor, state: State) -> tuple[Tensor, State]:
        assert isinstance(state, Tensor)
        pre = p_t + self.recurrent_projection(state)
        h = pre.tanh() if self.nonlinearity == "tanh" else pre.relu()
        return h, h


@register_cell("rnn_tanh", paper=_ElmanRNN.paper, fused=True)
class ElmanRNNTanh(_ElmanRNN):
    """Elman RNN with ``φ = tanh`` on ``torch.nn.RNN(nonlinearity="tanh")``.

    ``h_t = tanh(W x_t + b + U h_{t-1} + c)``; parameters ``HI + H² + 2H``.
    Source: Elman 1990. Initialisation: torch's, ``U(-1/sqrt(H), 1/sqrt(H))``.
    """

    nonlinearity = "tanh"


@register_cell("rnn_relu", paper=_ElmanRNN.paper, fused=True)
class ElmanRNNReLU(_ElmanRNN):
    """Elman RNN with ``φ = ReLU`` on ``torch.nn.RNN(nonlinearity="relu")``.

    ``h_t = ReLU(W x_t + b + U h_{t-1} + c)``; parameters ``HI + H² + 2H``.
    Source: Elman 1990. Initialisation: torch's, ``U(-1/sqrt(H), 1/sqrt(H))``.
    """

    nonlinearity = "relu"
