"""Stop (or skip) training on a non-finite loss, gradient or weight, before it reaches a checkpoint.

:class:`NonFiniteGuard` is a Lightning callback that the ``zoo`` command adds to every run as
``--nonfinite.*``. It knows nothing of MLflow: a fit it stops raises
:class:`~zoo.errors.NonFiniteLossError`, so Lightning marks the run failed and the hooks that log or
register a model at the end of ``fit`` never run.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from zoo.errors import NonFiniteLossError

Policy = Literal["stop", "skip"]
_LOSS = "<loss>"  # not a parameter name (those are dotted identifiers)

#: What the error message proposes; the first two are what usually cures a diverging run.
FIX = (
    "lower the learning rate (--model.learning_rate), clip gradients (--trainer.gradient_clip_val 1.0), "
    "or skip such batches with --nonfinite.policy skip (at most --nonfinite.max_skipped of them)"
)


def first_nonfinite(named: Any) -> str | None:
    """The name of the first floating tensor in ``named`` (pairs of name and tensor) with a NaN or inf.

    One host sync when all are finite (the common case, once per training step on a GPU).
    """
    pairs = [(name, t) for name, t in named if t is not None and t.is_floating_point()]
    if not pairs:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(pairs[0][1].device) for _, t in pairs])
    if bool(finite.all()):
        return None
    return str(pairs[int((~finite).nonzero()[0, 0])][0])


class NonFiniteGuard(Callback):
    """Check every training step for a non-finite loss, gradient or weight.

    The loss (``on_before_backward``) and the gradients (``on_before_optimizer_step``, after the
    backward pass and before gradient clipping and the optimizer step) are checked before the weights
    change; the weights are checked after the step (``on_train_batch_end``), before any checkpoint of that
    step is written (Lightning runs checkpoint callbacks last). Under DDP the decision is reduced over all
    processes, so a fault on one rank stops or skips on every rank together.

    With ``policy="stop"`` a fault raises :class:`~zoo.errors.NonFiniteLossError` naming the global step,
    the epoch, the batch and the fixes. With ``policy="skip"`` a batch with a non-finite loss or gradient
    gets no optimizer step (its gradients are dropped, so the weights and the optimizer state stay as
    they were) and is counted: the count is logged as ``nonfinite_skipped`` at each epoch end and printed at
    the end of ``fit``; after ``max_skipped`` skipped batches the run stops as with ``"stop"``. Weights
    made non-finite by an optimizer step cannot be skipped: that always stops. Under a float16
    ``GradScaler`` (``precision: 16-mixed``) inf gradients are the scaler's business (it skips those
    steps itself), so only the loss and the weights are checked there.

    Args:
        policy: ``"stop"`` (default) or ``"skip"``.
        max_skipped: with ``"skip"``, stop once more than this many batches were skipped in one fit.
    """

    def __init__(self, policy: Policy = "stop", max_skipped: int = 100) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"nonfinite.policy must be 'stop' or 'skip', got {policy!r}")
        if max_skipped < 0:
            raise ValueError(f"nonfinite.max_skipped must be 0 or more, got {max_skipped}")
        self.policy = policy
        self.max_skipped = max_skipped
        self.skipped = 0
        self._batch_idx = 0
        self._loss: torch.Tensor | None = None
        self._stepped = False

    # -- where we are -------------------------------------------------------------------------------------
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx
        self._stepped = False

    def _where(self, trainer: L.Trainer) -> str:
        return f"global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx})"

    # -- before the weights change ------------------------------------------------------------------------
    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        # keep the first bad loss of an accumulation window, without a host sync per micro-batch
        loss = loss.detach()
        self._loss = loss if self._loss is None else torch.where(torch.isfinite(self._loss), loss, self._loss)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        checked = [] if self._loss is None else [(_LOSS, self._loss)]
        if getattr(trainer.precision_plugin, "scaler", None) is None:
            checked += [(name, p.grad) for name, p in pl_module.named_parameters() if p.grad is not None]
        bad = first_nonfinite(checked)
        problem = None
        if bad == _LOSS:
            problem = f"non-finite training loss ({float(self._loss)})"  # type: ignore[arg-type]
        elif bad is not None:
            loss = "" if self._loss is None else f" with a finite loss ({float(self._loss):.4g})"
            problem = f"non-finite gradient of {bad}{loss}"
        self._loss = None
        if not trainer.strategy.reduce_boolean_decision(problem is not None, all=False):
            self._stepped = True
            return
        problem = problem or "a non-finite loss or gradient on another process"
        if self.policy == "skip" and self.skipped < self.max_skipped:
            self.skipped += 1
            # an optimizer skips every parameter whose gradient is None: no update, no state change
            optimizer.zero_grad(set_to_none=True)
            return
        self._stop(trainer, problem, "training stopped before this step changed the weights")

    # -- after the optimizer step -------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._stepped:
            return
        bad = first_nonfinite(pl_module.named_parameters())
        if trainer.strategy.reduce_boolean_decision(bad is not None, all=False):
            # global_step already counts this step
            self._stop(
                trainer,
                f"the optimizer step made the weights non-finite ({bad or 'on another process'})",
                "training stopped before a checkpoint of these weights was written",
                step=trainer.global_step - 1,
            )

    def _stop(self, trainer: L.Trainer, problem: str, what: str, step: int | None = None) -> None:
        where = self._where(trainer)
        if step is not None:
            where = f"global step {step} (epoch {trainer.current_epoch}, batch {self._batch_idx})"
        ckpt = trainer.checkpoint_callback
        last = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written before it"
        skipped = (
            f" Batches skipped before it: {self.skipped} (--nonfinite.max_skipped {self.max_skipped})."
            if self.policy == "skip"
            else ""
        )
        raise NonFiniteLossError(
            f"{problem} at {where}: {what}; {kept}; nothing is logged as a model or registered.{skipped} "
            f"To fix: {FIX}."
        )

    # -- reporting ----------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.policy == "skip":
            # the count is the same on every rank (the decision was reduced)
            pl_module.log("nonfinite_skipped", float(self.skipped), on_step=False, on_epoch=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.policy == "skip" and trainer.is_global_zero:
            print(
                f"Skipped {self.skipped} training batches with a non-finite loss or gradient "
                f"(--nonfinite.policy skip, at most {self.max_skipped})",
                flush=True,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
