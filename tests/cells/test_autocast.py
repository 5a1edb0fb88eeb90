"""Every registered cell trains under bf16 autocast, what ``--trainer.precision bf16-mixed`` runs.

On CPU here; the same autocast rules put the input projections in bf16 on a GPU. Loop cells run their
recurrence in the state's precision (float32), so their outputs stay close to a float32 run.
"""

from __future__ import annotations

import pytest
import torch
from kernel_support import WIRED, record_kernel_calls

from zoo import RecurrentEncoder, build_cell, list_cells
from zoo.cells import kernels as K

# bf16 keeps 8 bits of mantissa (relative error ~4e-3 per rounding); over a few steps of a unit-scale
# recurrence the outputs stay within a few 1e-3 of float32: 5e-2 catches a wrong result, not rounding.
TOL = 5e-2


@pytest.mark.parametrize("name", list_cells())
def test_cell_forward_backward_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    layer = build_cell(name, 8, 16)
    x = torch.randn(3, 7, 8)
    for lengths in (None, torch.tensor([7, 3, 1])):
        reference, _ = layer(x, lengths=lengths)
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = layer(x, lengths=lengths)
        out.float().sum().backward()
        assert torch.isfinite(out.float()).all()
        assert (out.float() - reference).abs().max() < TOL
        grads = [p.grad for p in layer.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("cell", ["mgu", "gru_cho", "lstm"])
def test_encoder_under_bf16_autocast_carries_its_state(cell: str) -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell=cell, input_size=8, hidden_size=16, num_layers=2)
    x = torch.randn(2, 10, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = enc(x[:, :5])
        out, _ = enc(x[:, 5:], state)  # the carried state of truncated BPTT, as the LM uses it
    full, _ = enc(x)
    assert (out.float() - full[:, 5:]).abs().max() < TOL


@pytest.mark.parametrize("name", WIRED)
def test_kernel_cells_run_their_kernel_in_float32_under_autocast(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under bf16 autocast the hand-written kernel still runs, on the float32 state, like the step loop.

    Only the input projection is bf16; the kernel path and the step loop (kernels off) then compute the
    same float32 recurrence from the same bf16 projection, so they agree to float32 rounding.
    """
    torch.manual_seed(0)
    options = {"mode": "loop"} if name.startswith("min_") else {}
    layer = build_cell(name, 8, 16, **options)
    x = torch.randn(3, 7, 8)
    calls = record_kernel_calls(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = layer(x)
        with K.use_kernels(False):
            ref_out, ref_state = layer(x)
    assert calls, f"{name} left its kernel under autocast"
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state, ref_state, atol=1e-6, rtol=1e-5)
