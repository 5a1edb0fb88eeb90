"""When the hand-written kernels run: on CPU and CUDA, float32/float64, outside ``torch.func``
transforms, TorchScript, ``torch.compile`` and autocast; ``ZOO_KERNELS=0`` or :func:`use_kernels` turns
them off."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import Tensor

_ENABLED = os.environ.get("ZOO_KERNELS", "1") != "0"
# Where the kernels were measured faster than the autograd loop and checked against it: on an H200 they
# took 0.6x the loop's time (gru1 6.2 vs 10.0 ms, mgu 5.8 vs 9.1 at T=128; docs/benchmarks.md).
# ZOO_KERNELS=all also allows any other device.
_DEVICES = ("cpu", "cuda")
_ANY_DEVICE = os.environ.get("ZOO_KERNELS", "1") == "all"
_DTYPES = (torch.float32, torch.float64)


@contextlib.contextmanager
def use_kernels(enabled: bool) -> Iterator[None]:
    """Turn the hand-written kernels on or off inside a ``with`` block (e.g. off for double backward)."""
    global _ENABLED
    old, _ENABLED = _ENABLED, enabled
    try:
        yield
    finally:
        _ENABLED = old


def _functorch_wrapped(t: Tensor) -> bool:
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))
    except AttributeError:  # pragma: no cover - older torch
        return False


def _autocast_on(device_type: str) -> bool:
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def kernels_enabled(*tensors: Tensor | None, ignore_autocast: bool = False) -> bool:
    """Whether the hand-written kernels can run on these tensors.

    True on CPU and CUDA for float32/float64 tensors outside ``torch.func`` transforms (vmap/grad/jvp),
    TorchScript, ``torch.compile`` and autocast, unless turned off by :func:`use_kernels` or
    ``ZOO_KERNELS=0``; ``ZOO_KERNELS=all`` allows any device. ``ignore_autocast=True`` is for callers
    that run the kernel with autocast off, in the state's precision (``zoo.cells.base.run_kernel``).
    """
    if not _ENABLED or torch.jit.is_scripting():
        return False
    if torch.compiler.is_compiling():
        return False
    for t in tensors:
        if t is None:
            continue
        if t.device.type not in _DEVICES and not _ANY_DEVICE:
            return False
        if not ignore_autocast and _autocast_on(t.device.type):
            # called under autocast, the loop computes what autocast asks for (e.g. bf16 matmuls)
            return False
        if t.dtype not in _DTYPES or _functorch_wrapped(t):
            return False
    return True
