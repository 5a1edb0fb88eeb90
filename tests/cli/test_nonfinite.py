"""Non-finite losses, gradients and weights: the guard in a real Trainer, then the real ``zoo fit``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.errors import NonFiniteLossError
from zoo.nonfinite import NonFiniteGuard

NAN = float("nan")


class Tiny(L.LightningModule):
    """A linear regression whose batches ``bad_loss`` / ``bad_grad`` have a NaN loss / gradient and whose
    batch ``explode`` gets a finite gradient so large that the optimizer step overflows the weights."""

    def __init__(
        self,
        bad_loss: tuple[int, ...] = (),
        bad_grad: tuple[int, ...] = (),
        explode: int | None = None,
        optimizer: str = "adam",
    ) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 1)
        self.bad_loss, self.bad_grad, self.explode = bad_loss, bad_grad, explode
        self.optimizer = optimizer
        self.snapshots: list[tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor], int]] = []
        self._before: dict[str, torch.Tensor] = {}
        self._adam_steps = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.lin(x)
        if batch_idx in self.bad_grad:
            out.register_hook(lambda g: g * NAN)
        loss = ((out - y) ** 2).mean()
        return loss * NAN if batch_idx in self.bad_loss else loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        if self.trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1 == self.explode:
            for p in self.parameters():
                p.grad.fill_(3e38)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._before = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self._adam_steps = self._optimizer_steps()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        after = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self.snapshots.append((batch_idx, self._before, after, self._optimizer_steps() - self._adam_steps))

    def _optimizer_steps(self) -> int:
        state = self.trainer.optimizers[0].state.get(self.lin.weight, {})
        return int(state["step"]) if "step" in state else 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=10.0)
        return torch.optim.Adam(self.parameters(), lr=0.05)


def batches(n: int, skip: tuple[int, ...] = ()) -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n * 4, 3, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    keep = [i for i in range(n * 4) if i // 4 not in skip]
    return DataLoader(TensorDataset(x[keep], y[keep]), batch_size=4)


def fit(
    model: Tiny, loader: DataLoader, guard: NonFiniteGuard, *callbacks: Any, steps: int = 100
) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=bool(callbacks),
        callbacks=[guard, *callbacks],
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, loader)
    return trainer


def test_skip_drops_the_update_of_a_nan_loss_and_of_a_nan_gradient() -> None:
    guard = NonFiniteGuard(policy="skip")
    faulty = Tiny(bad_loss=(2,), bad_grad=(4,))
    fit(faulty, batches(6), guard)
    assert guard.skipped == 2
    for batch_idx, before, after, adam_steps in faulty.snapshots:
        changed = any(not torch.equal(before[k], after[k]) for k in before)
        if batch_idx in (2, 4):
            assert not changed and adam_steps == 0, f"batch {batch_idx} was skipped but changed the model"
        else:
            assert changed and adam_steps == 1, f"batch {batch_idx} should have trained"
    # skipping a batch is exactly as if it had never been there: weights and Adam state untouched
    clean = Tiny()
    fit(clean, batches(6, skip=(2, 4)), NonFiniteGuard())
    for key, value in clean.state_dict().items():
        assert torch.equal(faulty.state_dict()[key], value), key
    assert all(torch.isfinite(v).all() for v in faulty.state_dict().values())


def test_skip_stops_after_max_skipped() -> None:
    with pytest.raises(NonFiniteLossError) as err:
        fit(Tiny(bad_loss=(1, 3)), batches(6), NonFiniteGuard(policy="skip", max_skipped=1))
    message = str(err.value)
    assert "non-finite training loss (nan) at global step 3 (epoch 0, batch 3)" in message
    assert "Batches skipped before it: 1 (--nonfinite.max_skipped 1)" in message


def test_stop_on_a_nan_gradient_with_a_finite_loss() -> None:
    model = Tiny(bad_grad=(2,))
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient of lin\.\w+ with a finite loss"):
        fit(model, batches(6), NonFiniteGuard())
    assert [s[0] for s in model.snapshots] == [0, 1]


def test_a_step_that_overflows_the_weights_stops_before_its_checkpoint(tmp_path: Path) -> None:
    every_step = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1, save_last=True)
    model = Tiny(explode=3, optimizer="sgd")
    with pytest.raises(NonFiniteLossError) as err:
        fit(model, batches(6), NonFiniteGuard(), every_step)
    assert "the optimizer step made the weights non-finite (lin." in str(err.value)
    assert "at global step 3 (epoch 0, batch 3)" in str(err.value)
    saved = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert saved == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "epoch=0-step=3.ckpt", "last.ckpt"]
    for path in tmp_path.glob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values()), path
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 3


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        NonFiniteGuard(policy="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0 or more"):
        NonFiniteGuard(max_skipped=-1)
