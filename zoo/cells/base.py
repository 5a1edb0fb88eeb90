"""The recurrent-layer contract every registered cell follows, and the helpers that enforce it.

Contract (batch first, always):

- ``forward(x, state=None, lengths=None) -> (output, state)``: ``x`` is ``[batch, time, input_size]``,
  ``output`` is ``[batch, time, hidden_size]``; ``state`` is ``[batch, hidden_size]`` or a tuple of such
  tensors (``(h, c)`` for LSTM-like cells).
- ``lengths`` (``[batch]`` integers in ``1..time``) marks steps at or past a sequence's length as padding:
  their outputs are zero and the returned state is the state after the last real step, so a padded batch
  gives exactly what each sequence gives alone.
- ``step(x_t, state=None) -> (h_t, state)`` runs one step; a loop of ``step`` equals ``forward``.
- ``forward_with_gates`` additionally returns the gate activations (``[batch, time, hidden_size]`` each)
  for cells that have gates (``gate_names``), for plots of what a cell remembered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeAlias, TypeVar

import torch
from torch import Tensor, nn

from zoo.cells.kernels.policy import kernels_enabled

State: TypeAlias = Tensor | tuple[Tensor, ...]
Gates: TypeAlias = dict[str, Tensor]
_Out = TypeVar("_Out")


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` to matching tensors of one or more states (tensor or tuple of tensors)."""
    first = states[0]
    if isinstance(first, tuple):
        return tuple(fn(*parts) for parts in zip(*states, strict=True))
    return fn(*states)


def detach_state(state: Any) -> Any:
    """Detach any nested state (tensor, tuple, list, dict) from the graph, for truncated BPTT."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


def as_lengths(lengths: Tensor | Sequence[int] | None, batch: int, time: int) -> Tensor | None:
    """Validate ``lengths`` against a ``[batch, time, ...]`` input; return a CPU int64 tensor or ``None``.

    ``None`` is returned when every sequence is full length, so callers can skip masking.
    """
    if lengths is None:
        return None
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(list(lengths))
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    if lengths.dim() != 1 or lengths.numel() != batch:
        raise ValueError(f"lengths must have shape [batch] = [{batch}], got {list(lengths.shape)}")
    lengths = lengths.detach().to("cpu", torch.int64)
    if batch == 0:
        return None
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1:
        raise ValueError(f"every length must be at least 1 (an empty sequence has no state), got {lo}")
    if hi > time:
        raise ValueError(f"lengths must not exceed the time dimension of x ({time}), got {hi}")
    return None if lo == time else lengths


def step_mask(lengths: Tensor, time: int, device: torch.device) -> Tensor:
    """``[batch, time, 1]`` boolean mask, true on real steps."""
    steps = torch.arange(time, device=device)
    return (steps.unsqueeze(0) < lengths.to(device).unsqueeze(1)).unsqueeze(-1)


class RecurrentLayer(nn.Module):
    """Base class of every registered recurrent layer (one layer, one direction).

    Subclasses implement :meth:`_forward` (and :meth:`_forward_with_gates` when they have gates) on
    validated inputs; :meth:`forward` and :meth:`step` check shapes and lengths first.

    Attributes:
        cell_name: the registry name, set by ``register_cell``.
        paper: citation of the cell's source.
        gate_names: names of the gates :meth:`forward_with_gates` returns (empty if none).
        state_size: number of tensors in the state (1 for a tensor, 2 for ``(h, c)``).
    """

    cell_name: ClassVar[str | None] = None
    paper: ClassVar[str] = ""
    gate_names: ClassVar[tuple[str, ...]] = ()
    state_size: ClassVar[int] = 1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    # -- the contract -------------------------------------------------------------------------------
    def forward(
        self, x: Tensor, state: State | None = None, lengths: Tensor | Sequence[int] | None = None
    ) -> tuple[Tensor, State]:
        """Run the layer over a batch-first sequence.

        Args:
            x: ``[batch, time, input_size]``.
            state: initial state (zeros when ``None``).
            lengths: ``[batch]`` real lengths; later steps are padding.

        Returns:
            ``output`` ``[batch, time, hidden_size]`` (zero on padding) and the state after each
            sequence's last real step.
        """
        lens = self._check(x, state, lengths)
        return self._forward(x, state, lens)

    def forward_with_gates(
        self, x: Tensor, state: State | None = None, lengths: Tensor | Sequence[int] | None = None
    ) -> tuple[Tensor, State, Gates]:
        """As :meth:`forward`, and also the gate activations, ``{name: [batch, time, hidden]}``.

        Raises:
            NotImplementedError: for cells without gates (``gate_names`` is empty).
        """
        if not self.gate_names:
            raise NotImplementedError(f"cell {self.cell_name!r} has no gates to inspect")
        lens = self._check(x, state, lengths)
        return self._forward_with_gates(x, state, lens)

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step: ``x_t`` is ``[batch, input_size]``; returns ``(h_t, state)``."""
        if x_t.dim() != 2 or x_t.size(-1) != self.input_size:
            raise ValueError(
                f"{self._who()}.step expects x_t of shape [batch, input_size={self.input_size}], "
                f"got {list(x_t.shape)}"
            )
        self._check_state(state, x_t.size(0))
        out, new_state = self._forward(x_t.unsqueeze(1), state, None)
        return out.squeeze(1), new_state

    def initial_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> State:
        """The zero state for ``batch_size`` sequences."""
        zeros = [
            torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
            for _ in range(self.state_size)
        ]
        return zeros[0] if self.state_size == 1 else tuple(zeros)

    def reset_parameters(self) -> None:
        """Re-initialise every parameter as the cell's docstring documents."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    # -- for subclasses -------------------------------------------------------------------------------
    def _forward(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        raise NotImplementedError

    def _forward_with_gates(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State, Gates]:
        raise NotImplementedError

    # -- checks -------------------------------------------------------------------------------------
    def _who(self) -> str:
        return f"{type(self).__name__}({self.cell_name})"

    def _check(self, x: Tensor, state: State | None, lengths: Tensor | Sequence[int] | None) -> Tensor | None:
        if x.dim() != 3:
            raise ValueError(
                f"{self._who()} expects x of shape [batch, time, input_size={self.input_size}] "
                f"(batch first), got a {x.dim()}-d tensor of shape {list(x.shape)}"
            )
        if x.size(-1) != self.input_size:
            raise ValueError(
                f"{self._who()} was built with input_size={self.input_size} but x has "
                f"{x.size(-1)} features (shape {list(x.shape)})"
            )
        if x.size(1) == 0:
            raise ValueError(f"{self._who()} got an empty sequence (time dimension 0)")
        self._check_state(state, x.size(0))
        return as_lengths(lengths, x.size(0), x.size(1))

    def _check_state(self, state: State | None, batch: int) -> None:
        if state is None:
            return
        parts = state if isinstance(state, tuple) else (state,)
        if len(parts) != self.state_size:
            want = "a tensor" if self.state_size == 1 else f"a tuple of {self.state_size} tensors"
            raise ValueError(f"{self._who()} state must be {want} of shape [batch, {self.hidden_size}]")
        for p in parts:
            if p.shape != (batch, self.hidden_size):
                raise ValueError(
                    f"{self._who()} state must have shape [batch={batch}, hidden_size={self.hidden_size}], "
                    f"got {list(p.shape)}"
                )


class LoopLayer(RecurrentLayer):
    """A layer whose input projections are one matmul over all steps and whose recurrence is a loop.

    Subclasses implement :meth:`project` (``[batch, time, input]`` -> ``[batch, time, P]``) and
    :meth:`recur` (one step from a precomputed projection); gated cells implement
    :meth:`recur_with_gates` instead, and :meth:`recur` drops its gates. Masking for ``lengths`` is done
    here, once for every family. A cell with a hand-written kernel (``zoo.cells.kernels``) implements
    :meth:`kernel`; :meth:`forward` then runs it wherever the kernels can run.
    """

    def project(self, x: Tensor) -> Tensor:
        """Input-side pre-activations for every step, ``[batch, time, P]``."""
        raise NotImplementedError

    def project_batch(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """:meth:`project` of a padded batch; only statistics over the batch (batch norm) need ``lengths``."""
        return self.project(x)

    def recur(self, p_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One recurrent step from the projection ``p_t`` ``[batch, P]``; returns ``(h_t, state)``."""
        h, new_state, _ = self.recur_with_gates(p_t, state)
        return h, new_state

    def recur_with_gates(self, p_t: Tensor, state: State) -> tuple[Tensor, State, Gates]:
        """As :meth:`recur`, plus this step's gate activations."""
        raise NotImplementedError

    def kernel(self, proj: Tensor, h0: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The whole recurrence on a hand-written kernel: ``(output, h_T)`` from the projection of every
        step ``proj``, the initial state ``h0`` and the step mask (``None``: no padding). Optional."""
        raise NotImplementedError

    def _run(
        self, x: Tensor, state: State | None, lengths: Tensor | None, gates: bool
    ) -> tuple[Tensor, State, Gates]:
        """``(output, state, gates)`` from the step loop; ``gates`` is empty unless asked for."""
        batch, time, _ = x.shape
        if state is None:
            state = self.initial_state(batch, device=x.device, dtype=x.dtype)
        proj = self.project_batch(x, lengths)
        # Under autocast (bf16-mixed) the projection above, most of the work, runs in low precision; the
        # recurrence runs in the state's precision with autocast off, since autocast would give its
        # matmuls and its elementwise ops (lerp, where) different dtypes.
        state_dtype = state[0].dtype if isinstance(state, tuple) else state.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._loop(proj.to(state_dtype), state, lengths, gates, x.device)

    def _loop(
        self, proj: Tensor, state: State, lengths: Tensor | None, gates: bool, device: torch.device
    ) -> tuple[Tensor, State, Gates]:
        time = proj.size(1)
        # unbind, not proj[:, t]: indexing a batch-first tensor in the graph makes an O(T^2) backward
        steps = proj.unbind(1)
        mask = step_mask(lengths, time, device).unbind(1) if lengths is not None else None
        outs: list[Tensor] = []
        gate_steps: dict[str, list[Tensor]] = {name: [] for name in self.gate_names} if gates else {}
        for t, p_t in enumerate(steps):
            if gates:
                h_t, new_state, g = self.recur_with_gates(p_t, state)
                for name, value in g.items():
                    gate_steps[name].append(value)
            else:
                h_t, new_state = self.recur(p_t, state)
            if mask is not None:
                m = mask[t]
                new_state = map_state(lambda new, old, m=m: torch.where(m, new, old), new_state, state)
                h_t = h_t * m
            state = new_state
            outs.append(h_t)
        output = torch.stack(outs, 1)
        gate_out = {}
        if gates:
            gate_out = {name: torch.stack(v, 1) for name, v in gate_steps.items()}
            if lengths is not None:
                m = step_mask(lengths, time, device)
                gate_out = {name: v * m for name, v in gate_out.items()}
        return output, state, gate_out

    def _forward(self, x: Tensor, state: State | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        if type(self).kernel is not LoopLayer.kernel:
            inputs = kernel_inputs(self, x, state, lengths)
            if inputs is not None:
                h0, mask = inputs
                return run_kernel(self.kernel, self.project_batch(x, lengths), h0, mask)
        output, state, _ = self._run(x, state, lengths, gates=False)
        return output, state

    def _forward_with_gates(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State, Gates]:
        return self._run(x, state, lengths, gates=True)


def kernel_inputs(
    layer: RecurrentLayer, x: Tensor, state: object, lengths: Tensor | None
) -> tuple[Tensor, Tensor | None] | None:
    """``(h0, mask)`` for running a one-tensor-state layer on a kernel, or ``None`` where none can run.

    ``state`` is the layer's state or ``None`` (zeros); ``lengths`` the checked lengths or ``None``.
    ``None`` back means: take the layer's step loop. The kernel then runs through :func:`run_kernel`
    (autocast off, the state's precision), so autocast does not rule it out.
    """
    tensors = (x, *([state] if isinstance(state, Tensor) else []), *layer.parameters())
    if not kernels_enabled(*tensors, ignore_autocast=True):
        return None
    h0 = state if isinstance(state, Tensor) else x.new_zeros(x.size(0), layer.hidden_size)
    mask = None if lengths is None else step_mask(lengths, x.size(1), x.device)
    return h0, mask


def run_kernel(kernel: Callable[..., _Out], proj: Tensor, h0: Tensor, *args: Any) -> _Out:
    """``kernel(proj, h0, *args)`` in the state's precision with autocast off, as ``LoopLayer`` runs its loop.

    Under bf16 autocast ``proj`` (the input projection) arrives in bf16; the hand-written kernels of
    ``zoo.cells.kernels`` take float32/float64 only, and the recurrence runs in the state's precision.
    """
    device_type = proj.device.type
    if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return kernel(proj.to(h0.dtype), h0, *args)
    with torch.autocast(device_type=device_type, enabled=False):
        return kernel(proj.to(h0.dtype), h0, *args)


def uniform_(params: Sequence[Tensor], hidden_size: int) -> None:
    """torch's RNN initialisation: every tensor from ``U(-1/sqrt(H), 1/sqrt(H))``."""
    bound = 1.0 / hidden_size**0.5
    with torch.no_grad():
        for p in params:
            p.uniform_(-bound, bound)


def glorot_orthogonal_(weight_ih: Tensor, weight_hh: Tensor, gates: int) -> None:
    """Glorot-uniform input weights and an orthogonal block of recurrent weights per gate, as haste and
    the pytorch-kaldi code initialise their GRUs."""
    with torch.no_grad():
        nn.init.xavier_uniform_(weight_ih)
        for block in weight_hh.chunk(gates, dim=0):
            nn.init.orthogonal_(block)
