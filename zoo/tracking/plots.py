"""Figures logged with a run: learning curves from the metric history and a GRU gate heatmap."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on training machines and in CI
import matplotlib.pyplot as plt
import numpy as np

_SPLIT = re.compile(r"^(train|val|valid|test)[_/](.+?)(?:_(step|epoch))?$")


def metric_groups(keys: Sequence[str]) -> dict[str, list[str]]:
    """Group metric keys by what they measure: ``train_loss`` and ``val_loss`` both under ``loss``."""
    groups: dict[str, list[str]] = defaultdict(list)
    for key in sorted(keys):
        match = _SPLIT.match(key)
        groups[match.group(2) if match else key].append(key)
    return dict(groups)


def learning_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: str | Path) -> Path | None:
    """Plot each metric group against the step, one panel per group; ``None`` when there is no history.

    Args:
        history: metric key -> ``(step, value)`` pairs, as MLflow's metric history gives them.
        path: the PNG to write.
    """
    groups = {
        name: [k for k in keys if history.get(k)]
        for name, keys in metric_groups([k for k in history if k not in ("epoch", "lr")]).items()
    }
    groups = {name: keys for name, keys in groups.items() if keys}
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 1, figsize=(6, 2.6 * len(groups)), squeeze=False)
    for ax, (name, keys) in zip(axes[:, 0], groups.items(), strict=True):
        for key in keys:
            points = sorted(history[key])
            ax.plot(
                [s for s, _ in points],
                [v for _, v in points],
                marker="." if len(points) < 30 else None,
                label=key,
            )
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def gate_heatmap(gates: Sequence[Mapping[str, Any]], tokens: Sequence[str], path: str | Path) -> Path | None:
    """Heatmaps of gate activations (hidden units x tokens), one panel per layer/direction and gate.

    Args:
        gates: per layer/direction, gate name -> ``[T, H]`` array (``zoo.tasks.gate_activations``).
        tokens: the ``T`` tokens, for the x axis.
        path: the PNG to write.
    """
    panels = [(i, name, np.asarray(a)) for i, layer in enumerate(gates) for name, a in layer.items()]
    if not panels:
        return None
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(6, 0.35 * len(tokens)), 2.8 * len(panels)), squeeze=False
    )
    for ax, (i, name, values) in zip(axes[:, 0], panels, strict=True):
        image = ax.imshow(
            values.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest"
        )
        ax.set_title(f"layer/direction {i}: {name} gate")
        ax.set_ylabel("hidden unit")
        ax.set_xticks(range(len(tokens)))
        ax.set_xticklabels(tokens, rotation=90, fontsize="small")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
