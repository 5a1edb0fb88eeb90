"""indrnn: an independent float64 reference, the nn.RNN(relu) identity, the |u| clip and the init."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from zoo.cells import build_cell

B, T, I, H = 3, 6, 4, 5
TOL = {"atol": 1e-10, "rtol": 1e-10}


def ref_indrnn(x: Tensor, h: Tensor, W: Tensor, u: Tensor, b: Tensor) -> Tensor:
    """h_t = ReLU(W x_t + u ⊙ h_{t-1} + b), written out per unit."""
    outs = []
    for t in range(x.size(1)):
        pre = x[:, t] @ W.T + b + torch.stack([u[k] * h[:, k] for k in range(H)], 1)
        h = torch.where(pre > 0, pre, torch.zeros_like(pre))
        outs.append(h)
    return torch.stack(outs, 1)


def make(seed: int = 0, **options: float | None) -> nn.Module:
    torch.manual_seed(seed)
    cell = build_cell("indrnn", I, H, **options).double()
    with torch.no_grad():  # a non-zero bias and some negative u, so every term of the equation matters
        cell.bias.uniform_(-0.5, 0.5)
        cell.weight_hh.uniform_(-1.2, 1.2)
    return cell


def test_against_float64_reference() -> None:
    cell = make()
    w = {n: p.detach() for n, p in cell.named_parameters()}
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.rand(B, H, dtype=torch.float64)
    with torch.no_grad():
        out, state = cell(x, h0)
        h1, _ = cell.step(x[:, 0], h0)
    want = ref_indrnn(x, h0, w["weight_ih"], w["weight_hh"], w["bias"])
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(state, want[:, -1], **TOL)
    torch.testing.assert_close(h1, want[:, 0], **TOL)
    assert (out == 0).any() and (out > 0).any(), "the case should exercise both sides of the ReLU"


def test_parameter_count() -> None:
    cell = build_cell("indrnn", I, H)
    assert sum(p.numel() for p in cell.parameters()) == H * I + 2 * H
    assert cell.weight_hh.shape == (H,)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_equals_relu_rnn_with_a_diagonal_recurrent_matrix(dtype: torch.dtype, tol: float) -> None:
    cell = make().to(dtype)
    rnn = nn.RNN(I, H, nonlinearity="relu", batch_first=True).to(dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(cell.weight_ih)
        rnn.weight_hh_l0.copy_(torch.diag(cell.weight_hh))
        rnn.bias_ih_l0.copy_(cell.bias)
        rnn.bias_hh_l0.zero_()
        x = torch.randn(B, T, I, dtype=dtype)
        h0 = torch.rand(B, H, dtype=dtype)
        out, state = cell(x, h0)
        want, hn = rnn(x, h0.unsqueeze(0))
    torch.testing.assert_close(out, want, atol=tol, rtol=tol)
    torch.testing.assert_close(state, hn[0], atol=tol, rtol=tol)


def test_recurrent_max_abs_clips_u_in_the_forward_pass() -> None:
    cell = make(recurrent_max_abs=0.5)
    u = cell.weight_hh.detach().clone()
    assert (u.abs() > 0.5).any() and (u.abs() < 0.5).any()
    w = {n: p.detach() for n, p in cell.named_parameters()}
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.rand(B, H, dtype=torch.float64)
    out, _ = cell(x, h0)
    want = ref_indrnn(x, h0, w["weight_ih"], u.clamp(-0.5, 0.5), w["bias"])
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(cell.weight_hh.detach(), u)  # the stored u is untouched
    out.sum().backward()
    grad = cell.weight_hh.grad
    assert grad is not None
    assert torch.all(grad[u.abs() > 0.5] == 0), "a clipped unit gets no gradient through u"
    assert (grad[u.abs() < 0.5] != 0).any()
    unclipped, _ = make()(x, h0)
    assert (unclipped - out).abs().max() > 1e-3


def test_recurrent_max_abs_gradcheck() -> None:
    torch.manual_seed(0)
    cell = build_cell("indrnn", 3, 2, recurrent_max_abs=0.9).double()
    with torch.no_grad():  # one unit inside the bound, one beyond it (away from the kink)
        cell.weight_hh.copy_(torch.tensor([0.3, 1.5]))
        cell.bias.fill_(0.5)
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in cell.parameters())
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)

    def fn(x: Tensor, *ps: Tensor) -> Tensor:
        return torch.func.functional_call(cell, dict(zip(names, ps, strict=True)), (x,))[0]

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, "2"])
def test_bad_recurrent_max_abs_is_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match="recurrent_max_abs must be a positive number"):
        build_cell("indrnn", I, H, recurrent_max_abs=bad)


def test_init() -> None:
    torch.manual_seed(0)
    cell = build_cell("indrnn", 3, 64)
    u = cell.weight_hh.detach()
    assert u.min() >= 0 and u.max() < 1 and u.max() > 0.9 and u.min() < 0.1, "u ~ U(0, 1)"
    assert torch.all(cell.bias == 0)
    bound = 1 / 64**0.5
    assert cell.weight_ih.abs().max() <= bound and cell.weight_ih.abs().max() > 0.8 * bound
    assert "recurrent_max_abs=0.5" in repr(build_cell("indrnn", 3, 4, recurrent_max_abs=0.5))
