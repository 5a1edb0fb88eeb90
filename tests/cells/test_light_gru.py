"""li_gru: float64 references for each norm, parameter counts, and batch norm over real steps only."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from zoo.cells import build_cell

B, T, I, H = 3, 6, 4, 5
TOL = {"atol": 1e-10, "rtol": 1e-10}


def ref_li_gru(x: Tensor, h: Tensor, W: Tensor, U: Tensor, norm) -> tuple[Tensor, Tensor]:
    outs, zs = [], []
    for t in range(x.size(1)):
        pre = norm(x[:, t] @ W.T) + h @ U.T
        a, k = pre[:, :H], pre[:, H:]
        z = torch.sigmoid(k)
        h = z * h + (1 - z) * torch.relu(a)
        outs.append(h)
        zs.append(z)
    return torch.stack(outs, 1), torch.stack(zs, 1)


def make(norm: str):
    torch.manual_seed(0)
    cell = build_cell("li_gru", I, H, norm=norm).double()
    with torch.no_grad():  # non-trivial affine, so a swapped or missing term shows
        for name, p in cell.named_parameters():
            if name.startswith("norm.") or name == "bias":
                p.add_(0.5 * torch.randn_like(p))
    return cell


def layer_norm(gain: Tensor, shift: Tensor):
    def norm(v: Tensor) -> Tensor:
        mean = v.mean(-1, keepdim=True)
        var = ((v - mean) ** 2).mean(-1, keepdim=True)
        return gain * (v - mean) / torch.sqrt(var + 1e-5) + shift

    return norm


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_against_float64_reference(norm: str) -> None:
    cell = make(norm).eval()
    W, U = cell.weight_ih.detach(), cell.weight_hh.detach()
    if norm == "layer":
        fn = layer_norm(cell.norm.weight.detach(), cell.norm.bias.detach())
    elif norm == "batch":
        with torch.no_grad():
            cell.norm.running_mean.copy_(torch.randn(2 * H))
            cell.norm.running_var.copy_(torch.rand(2 * H) + 0.5)
        mu, var = cell.norm.running_mean.clone(), cell.norm.running_var.clone()
        gain, shift = cell.norm.weight.detach(), cell.norm.bias.detach()

        def fn(v: Tensor) -> Tensor:
            return gain * (v - mu) / torch.sqrt(var + 1e-5) + shift
    else:
        bias = cell.bias.detach()

        def fn(v: Tensor) -> Tensor:
            return v + bias

    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    want, z = ref_li_gru(x, h0, W, U, fn)
    out, state, gates = cell.forward_with_gates(x, h0)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(state, want[:, -1], **TOL)
    torch.testing.assert_close(gates["update"], z, **TOL)


@pytest.mark.parametrize("norm,affine", [("layer", 4 * H), ("batch", 4 * H), ("none", 2 * H)])
def test_parameter_count(norm: str, affine: int) -> None:
    cell = build_cell("li_gru", I, H, norm=norm)
    assert sum(p.numel() for p in cell.parameters()) == 2 * H * (I + H) + affine


def test_batch_norm_eval_padding_equals_each_sequence_alone() -> None:
    cell = make("batch").eval()
    x = torch.randn(B, T, I, dtype=torch.float64)
    lengths = [T, 3, 1]
    out, state = cell(x, lengths=torch.tensor(lengths))
    for b, n in enumerate(lengths):
        o, s = cell(x[b : b + 1, :n])
        torch.testing.assert_close(out[b : b + 1, :n], o, **TOL)
        torch.testing.assert_close(state[b : b + 1], s, **TOL)
        assert torch.all(out[b, n:] == 0)


def test_batch_norm_training_uses_real_steps_only() -> None:
    cell = make("batch").train()
    x = torch.randn(B, T, I, dtype=torch.float64)
    lengths = torch.tensor([T, 3, 1])
    real = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    # padding content must not matter: not to the outputs, the state, nor the running statistics
    x2 = x.clone()
    x2[~real] = 100 * torch.randn(int((~real).sum()), I, dtype=torch.float64)
    before = cell.norm.running_mean.clone(), cell.norm.running_var.clone()
    out, state = cell(x, lengths=lengths)
    stats = cell.norm.running_mean.clone(), cell.norm.running_var.clone()
    cell.norm.running_mean.copy_(before[0])
    cell.norm.running_var.copy_(before[1])
    out2, state2 = cell(x2, lengths=lengths)
    torch.testing.assert_close(out2, out, **TOL)
    torch.testing.assert_close(state2, state, **TOL)
    torch.testing.assert_close(cell.norm.running_mean, stats[0], **TOL)

    # the statistics are those of W x over the real steps; running stats move by the momentum
    wx = (x @ cell.weight_ih.detach().T)[real]  # [n_real, 2H]
    mu, var = wx.mean(0), wx.var(0, unbiased=False)
    gain, shift = cell.norm.weight.detach(), cell.norm.bias.detach()
    want, _ = ref_li_gru(
        x,
        torch.zeros(B, H, dtype=torch.float64),
        cell.weight_ih.detach(),
        cell.weight_hh.detach(),
        lambda v: gain * (v - mu) / torch.sqrt(var + 1e-5) + shift,
    )
    torch.testing.assert_close(out[real], want[real], **TOL)
    torch.testing.assert_close(stats[0], 0.9 * before[0] + 0.1 * mu, **TOL)
    torch.testing.assert_close(stats[1], 0.9 * before[1] + 0.1 * wx.var(0, unbiased=True), **TOL)


def test_batch_norm_training_without_padding_matches_torch_batch_norm() -> None:
    cell = make("batch").train()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, _ = cell(x)
    wx = (x @ cell.weight_ih.detach().T).reshape(-1, 2 * H)
    mu, var = wx.mean(0), wx.var(0, unbiased=False)
    gain, shift = cell.norm.weight.detach(), cell.norm.bias.detach()
    want, _ = ref_li_gru(
        x,
        torch.zeros(B, H, dtype=torch.float64),
        cell.weight_ih.detach(),
        cell.weight_hh.detach(),
        lambda v: gain * (v - mu) / torch.sqrt(var + 1e-5) + shift,
    )
    torch.testing.assert_close(out, want, **TOL)


def test_bad_norm_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="norm must be one of 'layer', 'batch', 'none'"):
        build_cell("li_gru", I, H, norm="group")
