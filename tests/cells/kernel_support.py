"""Shared by the cell tests: record which hand-written kernels (``zoo.cells.kernels``) a call runs, and
fill the buffers they allocate with NaN."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import pytest
import torch

from zoo.cells.kernels import layer_norm, linear, minimal, reset_before

# the cells whose forward runs on a kernel (the others keep their step loop)
WIRED = ["gru_cho", "gru1", "gru2", "gru3", "ln_gru", "mgu", "min_gru", "min_lstm"]
# every kernel Function, by name (the family modules of zoo.cells.kernels hold one or more each)
KERNEL_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {
    name: obj
    for module in (layer_norm, linear, minimal, reset_before)
    for name, obj in vars(module).items()
    if isinstance(obj, type)
    and issubclass(obj, torch.autograd.Function)
    and obj is not torch.autograd.Function
}


def _recorders(calls: list[str]) -> dict[str, Callable[..., object]]:
    """For each kernel Function, an ``apply`` that appends the Function's name to ``calls``, then runs it."""

    def recorder(name: str) -> Callable[..., object]:
        run = KERNEL_FUNCTIONS[name].apply
        return lambda *args: (calls.append(name), run(*args))[1]

    return {name: recorder(name) for name in KERNEL_FUNCTIONS}


def record_kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch every kernel Function's ``apply`` to append its name to the returned list, then run it."""
    calls: list[str] = []
    for name, apply in _recorders(calls).items():
        monkeypatch.setattr(KERNEL_FUNCTIONS[name], "apply", apply)
    return calls


class Allocations:
    """What :func:`nan_filled_allocations` saw: NaN-filled buffers per zoo module, kernels run."""

    def __init__(self) -> None:
        self.by_module: dict[str, int] = {}
        self.kernels: list[str] = []

    @property
    def total(self) -> int:
        return sum(self.by_module.values())


def _poison(t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point() or t.is_complex():
        return t.fill_(float("nan"))
    return t.fill_(True) if t.dtype == torch.bool else t.fill_(torch.iinfo(t.dtype).max)


@contextlib.contextmanager
def nan_filled_allocations() -> Iterator[Allocations]:
    """Fill every buffer that a ``zoo.cells`` module allocates with ``empty``/``empty_like``/``new_empty``
    with NaN (integers: their maximum), so a read of memory the code never wrote shows in its results
    instead of passing by luck; also record which kernel Functions ran.

    The allocators are patched on ``torch`` (the modules call them as ``torch.empty`` and
    ``t.new_empty``); only calls made from a ``zoo.cells`` module are filled and counted.
    """
    seen = Allocations()
    originals = {
        "empty": torch.empty,
        "empty_like": torch.empty_like,
        "new_empty": torch.Tensor.new_empty,
    }

    def filled(alloc: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrapper(*args: object, **kwargs: object) -> torch.Tensor:
            out = alloc(*args, **kwargs)
            module = sys._getframe(1).f_globals.get("__name__", "")
            if module.startswith("zoo.cells"):
                seen.by_module[module] = seen.by_module.get(module, 0) + 1
                with torch.no_grad():
                    _poison(out)
            return out

        return wrapper

    applies = {name: function.apply for name, function in KERNEL_FUNCTIONS.items()}
    torch.empty = filled(originals["empty"])  # type: ignore[assignment]
    torch.empty_like = filled(originals["empty_like"])  # type: ignore[assignment]
    torch.Tensor.new_empty = filled(originals["new_empty"])  # type: ignore[method-assign]
    for name, apply in _recorders(seen.kernels).items():
        KERNEL_FUNCTIONS[name].apply = apply  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        torch.empty = originals["empty"]  # type: ignore[assignment]
        torch.empty_like = originals["empty_like"]  # type: ignore[assignment]
        torch.Tensor.new_empty = originals["new_empty"]  # type: ignore[method-assign]
        for name, apply in applies.items():
            KERNEL_FUNCTIONS[name].apply = apply  # type: ignore[method-assign]
