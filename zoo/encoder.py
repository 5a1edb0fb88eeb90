"""``RecurrentEncoder``: stacked, optionally bidirectional layers of any registered cell.

The encoder is the one thing tasks receive. It maps ``[batch, time, input_size]`` to
``[batch, time, output_size]`` (``output_size = hidden_size * num_directions``) and returns the final state
of every layer and direction, so that a recipe can swap ``cell: gru`` for ``cell: mgu`` and nothing else
changes.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from zoo.cells import Gates, RecurrentLayer, State, build_cell, check_cell_options, get_cell_spec
from zoo.cells.base import as_lengths
from zoo.cells.registry import check_size
from zoo.errors import ZooConfigError

EncoderState = list[State]


@dataclass
class EncoderConfig:
    """Everything about an encoder except its input size, which the task decides.

    Attributes:
        cell: a registry name (``zoo.list_cells()``).
        hidden_size: state size of every layer and direction.
        num_layers: stacked layers.
        bidirectional: add a layer reading each sequence backwards (within its length).
        dropout: dropout on the outputs of every layer but the last, in training only.
        cell_options: family-specific options, checked against the cell's signature.
        init: ``"default"`` keeps each cell's own initialisation; ``"uniform"`` draws every parameter of
            every layer from U(-init_scale, init_scale), as Zaremba et al. 2014 do.
        init_scale: the bound of ``init: uniform``.
    """

    cell: str = "gru"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    cell_options: dict[str, Any] = field(default_factory=dict)
    init: str = "default"
    init_scale: float = 0.1

    def build(self, input_size: int) -> RecurrentEncoder:
        """Build the encoder for inputs of ``input_size`` features."""
        return RecurrentEncoder(input_size=input_size, **asdict(self))


def check_encoder_args(
    cell: str,
    hidden_size: object,
    num_layers: object,
    dropout: object,
    cell_options: Mapping[str, Any],
    init: object = "default",
    init_scale: object = 0.1,
) -> None:
    """Raise :class:`~zoo.errors.ZooConfigError` (a ``ValueError``) for encoder arguments that cannot work.

    The one check of an encoder's configuration: :class:`RecurrentEncoder` runs it before building any
    layer, and the ``zoo`` command before loading data. The input size is checked by ``build_cell``.
    """
    get_cell_spec(cell)
    check_cell_options(cell, dict(cell_options))
    check_size("hidden_size", hidden_size, "units of each layer's state")
    check_size("num_layers", num_layers, "stacked layers")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= float(dropout) < 1.0:
        raise ZooConfigError(
            f"dropout must be a number in [0, 1) (the share of activations dropped between layers), "
            f"got {dropout!r}; use 0 for none"
        )
    if init not in INITS:
        raise ZooConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if isinstance(init_scale, bool) or not isinstance(init_scale, numbers.Real) or not float(init_scale) > 0:
        raise ZooConfigError(
            f"init_scale must be a positive number (the bound of init: uniform), got {init_scale!r}"
        )


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` ``[batch, time, ...]`` within its own length; padding stays put."""
    if lengths is None:
        return x.flip(1)
    batch, time = x.shape[:2]
    steps = torch.arange(time, device=x.device).unsqueeze(0).expand(batch, time)
    lens = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)
    index = index.view(batch, time, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


INITS = ("default", "uniform")


def uniform_init_(module: nn.Module, scale: float) -> None:
    """Draw every parameter of ``module`` from U(-scale, scale) in place (Zaremba et al. 2014)."""
    with torch.no_grad():
        for param in module.parameters():
            param.uniform_(-scale, scale)


class RecurrentEncoder(nn.Module):
    """Stacked recurrent layers of one registered cell.

    Args:
        cell: registry name of the cell (``"gru"``, ``"mgu"``, ...).
        input_size: features per input step.
        hidden_size: state size of each layer and direction.
        num_layers: number of stacked layers.
        bidirectional: also read every sequence backwards; outputs are concatenated ``[fwd, bwd]``.
        dropout: dropout between layers (not after the last), active in training only.
        cell_options: family-specific options for every layer.
        init: ``"default"`` (each cell's ``reset_parameters``) or ``"uniform"`` (every parameter from
            U(-init_scale, init_scale)).
        init_scale: the bound of ``init: uniform``.

    Raises:
        ZooConfigError: (a ``ValueError``) for an unknown cell or option, a size below 1 or a dropout
            outside ``[0, 1)``, before any layer is built.

    ``forward(x, state=None, lengths=None)`` returns ``output`` ``[batch, time, output_size]`` (zero on
    padding) and the final states as a list ordered ``layer0_fwd, layer0_bwd, layer1_fwd, ...``.
    """

    def __init__(
        self,
        cell: str = "gru",
        input_size: int = 1,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        cell_options: Mapping[str, Any] | None = None,
        init: str = "default",
        init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        options = dict(cell_options or {})
        check_encoder_args(cell, hidden_size, num_layers, dropout, options, init, init_scale)
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.cell_options = options
        layers: list[RecurrentLayer] = []
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * self.num_directions
            layers.extend(build_cell(cell, size, hidden_size, **options) for _ in range(self.num_directions))
        self.layers = nn.ModuleList(layers)
        self.drop = nn.Dropout(dropout)
        if init == "uniform":
            uniform_init_(self.layers, init_scale)
        self.init = init
        self.init_scale = init_scale

    @property
    def output_size(self) -> int:
        """Features per output step: ``hidden_size * num_directions``."""
        return self.hidden_size * self.num_directions

    @property
    def state_size(self) -> int:
        """Tensors per layer state (1, or 2 for LSTM-like cells)."""
        return self._layer(0).state_size

    def _layer(self, i: int) -> RecurrentLayer:
        layer = self.layers[i]
        assert isinstance(layer, RecurrentLayer)
        return layer

    def initial_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> EncoderState:
        """Zero states for every layer and direction."""
        return [
            self._layer(i).initial_state(batch_size, device=device, dtype=dtype)
            for i in range(len(self.layers))
        ]

    def _check_state(self, state: Sequence[State] | None) -> None:
        if state is not None and len(state) != len(self.layers):
            raise ValueError(
                f"encoder state must be a list of {len(self.layers)} layer states "
                f"(num_layers={self.num_layers} x directions={self.num_directions}), got {len(state)}"
            )

    def _run(
        self, x: Tensor, state: Sequence[State] | None, lengths: Tensor | Sequence[int] | None, gates: bool
    ) -> tuple[Tensor, EncoderState, list[Gates]]:
        if x.dim() != 3:
            raise ValueError(
                f"RecurrentEncoder expects x of shape [batch, time, input_size={self.input_size}], "
                f"got shape {list(x.shape)}"
            )
        self._check_state(state)
        lens = as_lengths(lengths, x.size(0), x.size(1))
        finals: EncoderState = []
        all_gates: list[Gates] = []
        out = x
        for layer in range(self.num_layers):
            if layer > 0:
                out = self.drop(out)
            dir_outputs = []
            for d in range(self.num_directions):
                i = layer * self.num_directions + d
                cell = self._layer(i)
                inp = out if d == 0 else reverse_padded(out, lens)
                s0 = None if state is None else state[i]
                if gates and cell.gate_names:
                    o, s, g = cell.forward_with_gates(inp, s0, lens)
                    if d == 1:
                        g = {k: reverse_padded(v, lens) for k, v in g.items()}
                    all_gates.append(g)
                else:
                    o, s = cell(inp, s0, lens)
                dir_outputs.append(o if d == 0 else reverse_padded(o, lens))
                finals.append(s)
            out = dir_outputs[0] if len(dir_outputs) == 1 else torch.cat(dir_outputs, dim=-1)
        return out, finals, all_gates

    def forward(
        self,
        x: Tensor,
        state: Sequence[State] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, EncoderState]:
        """Encode ``x`` ``[batch, time, input_size]``; see the class docstring for the outputs."""
        out, finals, _ = self._run(x, state, lengths, gates=False)
        return out, finals

    def forward_with_gates(
        self, x: Tensor, state: Sequence[State] | None = None, lengths: Tensor | Sequence[int] | None = None
    ) -> tuple[Tensor, EncoderState, list[Gates]]:
        """As :meth:`forward`, plus each layer's (and direction's) gate activations, in layer order.

        Raises:
            NotImplementedError: if the cell has no gates to inspect.
        """
        if not self._layer(0).gate_names:
            raise NotImplementedError(f"cell {self.cell!r} has no gates to inspect")
        return self._run(x, state, lengths, gates=True)

    def step(self, x_t: Tensor, state: Sequence[State] | None = None) -> tuple[Tensor, EncoderState]:
        """One time step through every layer (unidirectional encoders only), for generation.

        Args:
            x_t: ``[batch, input_size]``.
            state: the list returned by :meth:`forward` or a previous :meth:`step`.

        Returns:
            ``h_t`` ``[batch, hidden_size]`` of the top layer and the new state list.
        """
        if self.bidirectional:
            raise ValueError(
                "step() needs a unidirectional encoder: a backward direction must see the whole sequence"
            )
        self._check_state(state)
        new_state: EncoderState = []
        h = x_t
        for i in range(self.num_layers):
            if i > 0:
                h = self.drop(h)
            h, s = self._layer(i).step(h, None if state is None else state[i])
            new_state.append(s)
        return h, new_state

    def extra_repr(self) -> str:
        return (
            f"cell={self.cell!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, dropout={self.dropout}"
        )


def build_encoder(encoder: EncoderConfig | Mapping[str, Any] | nn.Module, input_size: int) -> nn.Module:
    """Turn what a task was given into an encoder module.

    Args:
        encoder: an :class:`EncoderConfig`, a mapping of its fields, or a ready module (used as is; it must
            take ``input_size`` features and expose ``output_size``).
        input_size: features the task feeds the encoder (e.g. the embedding size).
    """
    if isinstance(encoder, nn.Module):
        if not hasattr(encoder, "output_size"):
            raise ValueError(f"a custom encoder must expose `output_size`; {type(encoder).__name__} does not")
        return encoder
    if isinstance(encoder, Mapping):
        valid = sorted(EncoderConfig.__dataclass_fields__)
        unknown = sorted(set(encoder) - set(valid))
        if unknown:
            raise ValueError(f"unknown encoder key(s) {unknown}; valid: {valid}")
        encoder = EncoderConfig(**encoder)
    return encoder.build(input_size)
