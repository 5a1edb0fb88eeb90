"""Shared machinery of the cells that run on torch's fused kernels (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.cells.base import LoopLayer, State


class FusedLayer(LoopLayer):
    """One layer, one direction of a torch RNN module, with the zoo's contract on top.

    Variable lengths go through packed sequences, so the fused (cuDNN on GPU) kernel is kept.
    The :class:`LoopLayer` hooks (``project``/``recur_with_gates``) recompute the same equations in
    Python from the same weights, only for gate inspection.
    """

    torch_module: ClassVar[Callable[..., nn.RNNBase]]
    rnn: nn.RNNBase

    def _make(self, **kwargs: Any) -> None:
        self.rnn = self.torch_module(self.input_size, self.hidden_size, batch_first=True, **kwargs)

    def _weight(self, name: str) -> Tensor:
        w = getattr(self.rnn, name)
        assert isinstance(w, Tensor)
        return w

    def project(self, x: Tensor) -> Tensor:
        """``W x + b`` for every step, with the fused module's own weights."""
        return nn.functional.linear(x, self._weight("weight_ih_l0"), self._weight("bias_ih_l0"))

    def recurrent_projection(self, h: Tensor) -> Tensor:
        """``U h + c`` with the fused module's own weights."""
        return nn.functional.linear(h, self._weight("weight_hh_l0"), self._weight("bias_hh_l0"))

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias from ``U(-1/sqrt(H), 1/sqrt(H))``."""
        self.rnn.reset_parameters()

    def _forward(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        h0: Tensor | tuple[Tensor, ...] | None = None
        if state is not None:
            h0 = (
                tuple(s.unsqueeze(0).contiguous() for s in state)
                if isinstance(state, tuple)
                else state.unsqueeze(0).contiguous()
            )
        if lengths is None:
            out, hn = self.rnn(x, h0)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            packed_out, hn = self.rnn(packed, h0)
            out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.size(1))
        new_state: State = tuple(h.squeeze(0) for h in hn) if isinstance(hn, tuple) else hn.squeeze(0)
        return out, new_state
