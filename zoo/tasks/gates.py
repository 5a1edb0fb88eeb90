"""What a gated cell remembered: per-token gate activations of a trained task model, for plots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from zoo.cells import get_cell_spec, list_cells


def _gated_cells() -> list[str]:
    return [name for name in list_cells() if get_cell_spec(name).cls.gate_names]


def gate_activations(model: nn.Module, inputs: Sequence[int] | Tensor) -> list[dict[str, np.ndarray]]:
    """Run ``model`` on one sequence and return its encoder's gate activations per token.

    Args:
        model: a task model (``SequenceClassifier``, ``LanguageModel``, ``TokenTagger``, ``Forecaster``)
            whose encoder's cell has gates (``update`` and ``reset`` for the GRU family).
        inputs: one sequence: token ids (a list or ``[T]`` tensor, ``[1, T]`` accepted) for the text
            tasks, a ``[T, num_features]`` (or ``[1, T, F]``) window for the forecaster.

    Returns:
        One dict per layer and direction (``layer0_fwd, layer0_bwd, layer1_fwd, ...``), mapping each gate's
        name to a ``[T, hidden_size]`` array; a backward direction's rows are in reading order (row ``t``
        belongs to token ``t``).

    Raises:
        ValueError: when the encoder's cell has no gates; the message lists the cells that have.
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "forward_with_gates") or not hasattr(model, "encoder_inputs"):
        raise TypeError(
            f"gate_activations needs a zoo task model with a RecurrentEncoder, got {type(model).__name__}"
        )
    x = torch.as_tensor(inputs)
    text = not x.is_floating_point()
    if x.dim() == (1 if text else 2):
        x = x.unsqueeze(0)
    if x.dim() != (2 if text else 3) or x.size(0) != 1:
        raise ValueError(
            "gate_activations takes one sequence: token ids [T] or a window [T, num_features], "
            f"got shape {list(x.shape)}"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                features = cast(Any, model).encoder_inputs(x.to(device))
                _, _, gates = cast(Any, encoder).forward_with_gates(features)
            except NotImplementedError as err:
                raise ValueError(
                    f"{err}: gate activations need a gated cell, one of {_gated_cells()}"
                ) from err
    finally:
        model.train(was_training)
    return [{name: value[0].float().cpu().numpy() for name, value in layer.items()} for layer in gates]
