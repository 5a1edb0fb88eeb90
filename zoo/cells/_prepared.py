"""Loop layers that derive their per-step weights once per sequence instead of once per step."""

from __future__ import annotations

from torch import Tensor

from zoo.cells.base import Gates, LoopLayer, State


class PreparedLoopLayer(LoopLayer):
    """A :class:`LoopLayer` whose :meth:`recur` reads step-invariant tensors made once per sequence.

    Cells that keep torch's stacked weight layout (``weight_hh`` rows r, z, n) need slices of a parameter
    at every step. Slicing inside the time loop puts one slice per step into the autograd graph, and the
    backward of every slice materialises a zero-filled gradient of the whole parameter: measured 1.8x
    ``nn.GRU`` instead of 1.3x (forward+backward, B=32, I=128, H=256, T=128, CPU). So subclasses return
    those slices, transposes and other step-invariant values (a clipped vector, constant gates) from
    :meth:`prepare`; a forward pass calls it once and :meth:`recur` reads the result with
    :meth:`step_tensors`. Called on its own, :meth:`recur` still works: it prepares afresh.
    """

    _prepared: tuple[Tensor, ...] | None = None

    def prepare(self) -> tuple[Tensor, ...]:
        """The step-invariant tensors :meth:`recur` needs, computed from the current parameters."""
        raise NotImplementedError

    def step_tensors(self) -> tuple[Tensor, ...]:
        """What :meth:`prepare` made for the sequence being run (made afresh outside a forward pass)."""
        cached = self._prepared
        return cached if cached is not None else self.prepare()

    def _run(
        self, x: Tensor, state: State | None, lengths: Tensor | None, gates: bool
    ) -> tuple[Tensor, State, Gates]:
        self._prepared = self.prepare()
        try:
            return super()._run(x, state, lengths, gates)
        finally:
            # never keep a graph alive between calls
            self._prepared = None
