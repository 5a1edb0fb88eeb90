"""Pieces every task shares, as functions: encoder building, hyperparameters, input checks, optimiser.

The tasks keep their own ``__init__`` signatures (they are the recipe schema) and call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from zoo.encoder import EncoderConfig, build_encoder

EncoderArg = EncoderConfig | Mapping[str, Any] | nn.Module


def encoder_hparam(encoder: EncoderArg) -> dict[str, Any] | None:
    """The plain-dict form of an encoder argument for ``save_hyperparameters`` (``None`` for a module).

    A ready ``nn.Module`` cannot be stored as a plain type, so it is left out of the hyperparameters and
    ``load_from_checkpoint`` then needs it passed again (``Task.load_from_checkpoint(path, encoder=...)``).
    """
    if isinstance(encoder, nn.Module):
        return None
    if isinstance(encoder, EncoderConfig):
        config = encoder
    elif isinstance(encoder, Mapping):
        valid = sorted(EncoderConfig.__dataclass_fields__)
        unknown = sorted(set(encoder) - set(valid))
        if unknown:
            raise ValueError(f"unknown encoder key(s) {unknown}; valid: {valid}")
        config = EncoderConfig(**dict(encoder))
    else:
        raise TypeError(
            "encoder must be an EncoderConfig, a dict of its fields or an nn.Module, "
            f"got {type(encoder).__name__}"
        )
    out = asdict(config)
    out["cell_options"] = dict(out["cell_options"])
    return out


def make_encoder(encoder: EncoderArg, input_size: int) -> tuple[nn.Module, dict[str, Any] | None]:
    """Build the encoder a task was given; return it and its plain-dict hyperparameter (or ``None``)."""
    hparam = encoder_hparam(encoder)
    module = build_encoder(encoder if hparam is None else hparam, input_size)
    return module, hparam


def output_size(encoder: nn.Module) -> int:
    """Features per step the encoder outputs."""
    return int(getattr(encoder, "output_size"))  # noqa: B009  (a module attribute mypy cannot see)


def metric(metrics: nn.ModuleDict, name: str) -> Metric:
    """A metric from a ``ModuleDict`` (typed, for the logger)."""
    found = metrics[name]
    assert isinstance(found, Metric)
    return found


def is_bidirectional(encoder: nn.Module) -> bool:
    """Whether an encoder reads sequences backwards too (custom modules without the flag: no)."""
    return bool(getattr(encoder, "bidirectional", False))


def check_at_least(name: str, value: int, minimum: int, hint: str = "") -> None:
    """Raise a ``ValueError`` naming ``name`` when ``value < minimum``."""
    if int(value) < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}{hint}")


def check_pad_id(pad_id: int, vocab_size: int) -> None:
    """``pad_id`` must be a valid row of the embedding."""
    if not 0 <= pad_id < vocab_size:
        raise ValueError(f"pad_id={pad_id} must be in [0, vocab_size={vocab_size})")


def check_token_ids(input_ids: Tensor, vocab_size: int) -> None:
    """Fail clearly when a batch holds a token id the embedding does not have (one ``max()`` per batch)."""
    if input_ids.is_floating_point():
        raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
    if input_ids.numel() == 0:
        return
    hi, lo = int(input_ids.max()), int(input_ids.min())
    if hi >= vocab_size:
        raise ValueError(
            f"the batch holds token id {hi} but vocab_size={vocab_size}: set vocab_size to at least {hi + 1} "
            "(link it from the data module's `vocab_size`)"
        )
    if lo < 0:
        raise ValueError(f"the batch holds a negative token id ({lo}); input ids must be in [0, vocab_size)")


def plain_floats(values: Iterable[float] | Tensor | None, size: int, name: str, fill: float) -> list[float]:
    """``values`` as a list of ``size`` Python floats (``fill`` repeated when ``None``)."""
    if values is None:
        return [fill] * size
    out = [float(v) for v in (values.flatten().tolist() if isinstance(values, Tensor) else values)]
    if len(out) != size:
        raise ValueError(f"{name} must have {size} values (one per target), got {len(out)}")
    return out


def plain_names(names: Sequence[str] | None, size: int, name: str) -> list[str] | None:
    """Label names as a list of ``size`` strings, or ``None``."""
    if names is None:
        return None
    out = [str(n) for n in names]
    if len(out) != size:
        raise ValueError(f"{name} has {len(out)} names but the model has {size} classes")
    return out


def default_optimizer(module: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over every trainable parameter; LightningCLI's ``optimizer:`` config replaces it."""
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)


def lengths_or_full(batch: Mapping[str, Any], input_ids: Tensor) -> Tensor:
    """The batch's ``lengths`` or, when absent, every sequence at full length."""
    lengths = batch.get("lengths")
    if lengths is None:
        return torch.full((input_ids.size(0),), input_ids.size(1), dtype=torch.long, device=input_ids.device)
    return lengths


def real_step_mask(lengths: Tensor, time: int) -> Tensor:
    """``[batch, time]`` boolean mask, true on real steps."""
    steps = torch.arange(time, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def last_step(out: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
    """The encoder output that has read each whole sequence, ``[batch, time, D]`` -> ``[batch, D]``.

    Unidirectional: the output at the last real step. Bidirectional: the forward half at the last real step
    concatenated with the backward half at step 0 (where the backward direction has read everything).
    """
    index = (lengths.to(out.device) - 1).clamp(min=0)
    rows = torch.arange(out.size(0), device=out.device)
    last = out[rows, index]  # [batch, D]
    if not bidirectional:
        return last
    half = out.size(-1) // 2
    return torch.cat([last[:, :half], out[:, 0, half:]], dim=-1)


def pool(out: Tensor, lengths: Tensor, mode: str, bidirectional: bool) -> Tensor:
    """Pool ``out`` ``[batch, time, D]`` over real steps to ``[batch, D]`` (``last``, ``mean`` or ``max``)."""
    if mode == "last":
        return last_step(out, lengths, bidirectional)
    mask = real_step_mask(lengths.to(out.device), out.size(1)).unsqueeze(-1)  # [batch, time, 1]
    if mode == "mean":
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1).to(out.dtype)
    if mode == "max":
        return out.masked_fill(~mask, torch.finfo(out.dtype).min).amax(1)
    raise ValueError(f"pooling must be one of 'last', 'mean', 'max', got {mode!r}")
