"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

Their gates see only the input, so every step is ``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a``, ``b`` computed
for all steps in one matmul; that recurrence runs as a loop or a parallel scan
(:mod:`zoo.cells.kernels.linear`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells.base import Gates, RecurrentLayer, State, kernel_inputs, run_kernel, step_mask
from zoo.cells.kernels import linear_recurrence, min_gru_packed
from zoo.cells.registry import register_cell

FENG_2024 = "Feng et al. 2024, Were RNNs All We Needed?, arXiv:2410.01201"
MODES = ("auto", "scan", "loop")

# On the 2-core CPU of docs/benchmarks.md (B32 I128 H256, forward+backward) the chunked scan took 1.5-1.9x
# the loop's time at every T from 64 to 2048: its extra passes over memory cost more than the dispatches
# it saves. So the CPU never picks it. On an H200 the scan took 0.48-0.82x the loop's time from T=64 to
# T=2048 (0.08x nn.GRU at T=2048): there each loop step is a kernel launch, so the GPU takes the scan from
# short lengths on (under 64 steps not timed).
GPU_SCAN_MIN_T = 16


def choose_algorithm(mode: str, time: int, device: torch.device) -> str:
    """The algorithm ``mode`` resolves to for a sequence of ``time`` steps on ``device``."""
    if mode != "auto":
        return mode
    if device.type == "cpu":
        return "loop"
    return "scan" if time >= GPU_SCAN_MIN_T else "loop"


class _MinRNN(RecurrentLayer):
    """Shared machinery: one input projection, coefficients ``(a, b)``, the scan, masking, gates."""

    n_parts: int

    def __init__(self, input_size: int, hidden_size: int, mode: str = "auto") -> None:
        super().__init__(input_size, hidden_size)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode = mode
        self.linear = nn.Linear(input_size, self.n_parts * hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation, as the paper's code uses: weight and bias ``U(-1/√I, 1/√I)``."""
        self.linear.reset_parameters()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, mode={self.mode!r}"

    def coefficients(self, proj: Tensor) -> tuple[Tensor, Tensor, Gates]:
        """``(a, b, gates)`` of ``h_t = a ⊙ h_{t-1} + b`` from the projection ``[..., n_parts * H]``."""
        raise NotImplementedError

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step of the recurrence directly, ``h_t = a_t ⊙ h_{t-1} + b_t`` (no scan)."""
        if x_t.dim() != 2 or x_t.size(-1) != self.input_size:
            return super().step(x_t, state)  # raises the contract's error
        self._check_state(state, x_t.size(0))
        h = state if state is not None else x_t.new_zeros(x_t.size(0), self.hidden_size)
        assert isinstance(h, Tensor)
        a, b, _ = self.coefficients(self.linear(x_t))
        h = torch.addcmul(b, a, h)
        return h, h

    def _run_with_gates(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State, Gates]:
        """``(output, state, gates)`` from the coefficients and the scan (or its loop)."""
        h0 = state if state is not None else x.new_zeros(x.size(0), self.hidden_size)
        assert isinstance(h0, Tensor)
        # under autocast only the projection is low precision: a bf16 scan would compound its rounding
        # over every step, so the coefficients and the scan run in the state's precision
        return run_kernel(self._recurrence, self.linear(x), h0, lengths)

    def _recurrence(self, proj: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, State, Gates]:
        time = proj.size(1)
        a, b, gates = self.coefficients(proj)
        mask = None if lengths is None else step_mask(lengths, time, proj.device)
        h, new_state = linear_recurrence(a, b, h0, mask, choose_algorithm(self.mode, time, proj.device))
        if mask is not None:
            gates = {name: g * mask for name, g in gates.items()}
        return h, new_state, gates

    def _forward(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        out, new_state, _ = self._run_with_gates(x, state, lengths)
        return out, new_state

    def _forward_with_gates(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State, Gates]:
        return self._run_with_gates(x, state, lengths)


@register_cell("min_gru", paper=FENG_2024, parallel=True)
class MinGRU(_MinRNN):
    """minGRU: a GRU whose update gate and candidate see only the input (*write* convention).

    Equations (``linear`` rows: ``z`` then ``h̃``)::

        z_t  = σ(W_z x_t + b_z)
        h̃_t = W_h x_t + b_h
        h_t  = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

    ``h̃`` is the plain linear candidate of the equations above, not the log-space form
    ``g(x) = x + 0.5 (x ≥ 0), σ(x) (x < 0)`` of the paper's appendix: the scan here works in linear space
    with signed values, so the parallel and sequential paths compute the same function.

    Paper: Feng, Tung, Ahmed, Bengio, Hajimirsadeghi 2024, arXiv:2410.01201.
    Parameters: ``2HI + 2H``. Initialisation: ``nn.Linear``'s, ``U(-1/√I, 1/√I)``.
    Option ``mode``: ``"scan"`` (chunked parallel scan), ``"loop"`` (sequential) or ``"auto"`` (the loop
    on CPU, where it measured faster at every length; the scan from 16 steps on GPU).
    Gates inspected: update (z).
    """

    paper = FENG_2024
    gate_names = ("update",)
    n_parts = 2

    def _forward(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        # where the loop is chosen, the gate, the recurrence and their backward in one kernel (fewer
        # passes over memory than the coefficients and the linear recurrence)
        time = x.size(1)
        if time > 1 and choose_algorithm(self.mode, time, x.device) == "loop":
            inputs = kernel_inputs(self, x, state, lengths)
            if inputs is not None:
                h0, mask = inputs
                return run_kernel(min_gru_packed, self.linear(x), h0, mask)
        return super()._forward(x, state, lengths)

    def coefficients(self, proj: Tensor) -> tuple[Tensor, Tensor, Gates]:
        k, cand = proj.chunk(2, dim=-1)
        z = torch.sigmoid(k)
        # a = 1 − z = σ(−k) exactly, without the cancellation of 1 − σ(k) for large k
        return torch.sigmoid(-k), z * cand, {"update": z}


@register_cell("min_lstm", paper=FENG_2024, parallel=True)
class MinLSTM(_MinRNN):
    """minLSTM: an LSTM without output gate or recurrent gate inputs, with normalised gates.

    Equations (``linear`` rows: ``f``, ``i``, ``h̃``)::

        f_t  = σ(W_f x_t + b_f),   i_t = σ(W_i x_t + b_i)
        h̃_t = W_h x_t + b_h
        f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
        h_t  = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

    ``h̃`` is the plain linear candidate (as for :class:`MinGRU`). The normalisation applies to the gates
    only, never to the carried state, so continuing from a returned state equals one longer run.
    State is ``h`` alone. Paper: Feng, Tung, Ahmed, Bengio, Hajimirsadeghi 2024, arXiv:2410.01201.
    Parameters: ``3HI + 3H``. Initialisation: ``nn.Linear``'s, ``U(-1/√I, 1/√I)``.
    Option ``mode`` as :class:`MinGRU`. Gates inspected: forget (f'), input (i').
    """

    paper = FENG_2024
    gate_names = ("forget", "input")
    n_parts = 3

    def coefficients(self, proj: Tensor) -> tuple[Tensor, Tensor, Gates]:
        f_pre, i_pre, cand = proj.chunk(3, dim=-1)
        # f' = σ(f)/(σ(f)+σ(i)) = softmax over the pair (log σ(f), log σ(i)): stable for any input
        pair = torch.stack([nn.functional.logsigmoid(f_pre), nn.functional.logsigmoid(i_pre)]).softmax(0)
        f, i = pair.unbind(0)
        return f, i * cand, {"forget": f, "input": i}
