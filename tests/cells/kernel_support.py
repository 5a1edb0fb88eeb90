"""Shared by the cell tests: record which hand-written kernels (``zoo.cells._kernels``) a call runs."""

from __future__ import annotations

import pytest
import torch

from zoo.cells import _kernels as K

# the cells whose forward runs on a kernel (the others keep their step loop)
WIRED = ["gru_cho", "gru1", "gru2", "gru3", "ln_gru", "mgu", "min_gru", "min_lstm"]
KERNEL_FUNCTIONS = sorted(
    name
    for name, obj in vars(K).items()
    if isinstance(obj, type)
    and issubclass(obj, torch.autograd.Function)
    and obj is not torch.autograd.Function
)


def record_kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch every kernel Function's ``apply`` to append its name to the returned list, then run it."""
    calls: list[str] = []
    for name in KERNEL_FUNCTIONS:
        cls = getattr(K, name)
        orig = cls.apply
        monkeypatch.setattr(cls, "apply", lambda *a, _o=orig, _n=name: (calls.append(_n), _o(*a))[1])
    return calls
