"""Every registered cell in every task: builds, trains, overfits one batch, survives a checkpoint.

Tiny sizes (hidden 8, vocabulary 20, 8 steps) keep one cell x task pair well under a second, so the
matrix stays fast as cells are added.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tests.tasks.tiny import TASKS, outputs, tiny_batch, tiny_model
from zoo import list_cells

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to")

MAX_OVERFIT_STEPS = 150


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("cell", list_cells())
def test_cell_in_task(cell: str, task: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model(task, cell)
    batch = tiny_batch(task)
    opt = model.configure_optimizers()
    model.train()

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    first = model.training_step(batch, 0)
    assert first.ndim == 0 and torch.isfinite(first)
    opt.zero_grad()
    first.backward()
    opt.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    encoder_params = {name for name in before if name.startswith("encoder.")}
    assert encoder_params and encoder_params <= changed, f"unchanged: {sorted(encoder_params - changed)}"

    start = float(first.detach())
    losses = []
    for _ in range(MAX_OVERFIT_STEPS):
        loss = model.training_step(batch, 0)
        losses.append(float(loss.detach()))
        if losses[-1] <= start / 2:
            break
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert losses[-1] <= start / 2, (
        f"{cell}/{task}: loss {start:.3f} -> {losses[-1]:.3f} in {len(losses)} steps"
    )

    path = tmp_path / "model.ckpt"
    hparams = dict(model.hparams)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": hparams,
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    loaded = type(model).load_from_checkpoint(path, weights_only=True)
    assert dict(loaded.hparams) == hparams
    assert torch.equal(outputs(model, batch), outputs(loaded, batch))
