"""Cells that run on the hand-written kernels (zoo.cells.kernels) compute what their step loop computes.

For each wired cell, float64, tiny sizes, from a given state with a length mask: the output, the final
state and the gradients of every parameter, the input and the initial state equal those of the same cell
with the kernels turned off (``use_kernels(False)``, the plain autograd step loop).
"""

from __future__ import annotations

import pytest
import torch
from kernel_support import WIRED, record_kernel_calls

from zoo.cells import build_cell
from zoo.cells import kernels as K
from zoo.cells.kernels import policy

B, T, I, H = 3, 6, 4, 5
LENGTHS = torch.tensor([6, 2, 4])


def _run(cell: torch.nn.Module, x: torch.Tensor, h0: torch.Tensor, lengths: torch.Tensor | None):
    x = x.detach().clone().requires_grad_()
    h0 = h0.detach().clone().requires_grad_()
    cell.zero_grad(set_to_none=True)
    out, state = cell(x, h0, lengths)
    # weights on both outputs, so every path of the backward is exercised
    w_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    ((out * w_out).sum() + (state * state).sum()).backward()
    grads = {n: p.grad.clone() for n, p in cell.named_parameters()}
    return out.detach(), state.detach(), x.grad, h0.grad, grads


@pytest.mark.parametrize("name", WIRED)
@pytest.mark.parametrize("with_lengths", [True, False])
def test_kernel_path_equals_loop_path(name: str, with_lengths: bool) -> None:
    torch.manual_seed(0)
    cell = build_cell(name, I, H).double()
    with torch.no_grad():  # non-trivial values for every parameter (gru3's gates included)
        for p in cell.parameters():
            p.normal_(0, 0.5)
    x, h0 = torch.randn(B, T, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    lengths = LENGTHS if with_lengths else None
    assert K.kernels_enabled(x, h0, *cell.parameters())
    fast = _run(cell, x, h0, lengths)
    with K.use_kernels(False):
        ref = _run(cell, x, h0, lengths)
    for a, b in zip(fast[:4], ref[:4], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert fast[4].keys() == ref[4].keys()
    for n in ref[4]:
        torch.testing.assert_close(fast[4][n], ref[4][n], rtol=1e-10, atol=1e-12, msg=f"grad of {n}")


@pytest.mark.parametrize("name", WIRED)
def test_kernel_path_is_taken(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wired cells really reach a kernel Function (else the equality test above proves nothing)."""
    calls = record_kernel_calls(monkeypatch)
    cell = build_cell(name, I, H)
    cell(torch.randn(B, T, I))
    assert calls, f"{name} did not run a hand-written kernel"
    calls.clear()
    with K.use_kernels(False):
        cell(torch.randn(B, T, I))
    assert not calls


@pytest.mark.parametrize("name", WIRED)
@pytest.mark.parametrize("with_lengths", [True, False])
def test_kernels_allocate_on_the_input_device(
    name: str, with_lengths: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every buffer the kernels make lives on the input's device (they also run on CUDA).

    Run on the ``meta`` device, which mixes with no other: a buffer made on the CPU by mistake raises
    here, on a machine without a GPU, instead of on the first CUDA run.
    """
    monkeypatch.setattr(policy, "_ANY_DEVICE", True)
    cell = build_cell(name, I, H, **({"mode": "loop"} if name.startswith("min_") else {})).to("meta")
    x = torch.randn(B, T, I, device="meta", requires_grad=True)
    h0 = torch.randn(B, H, device="meta", requires_grad=True)
    out, state = cell(x, h0, LENGTHS if with_lengths else None)
    (out.sum() + state.sum()).backward()
    assert x.grad is not None and x.grad.device.type == "meta"
    assert h0.grad is not None and all(p.grad is not None for p in cell.parameters())
