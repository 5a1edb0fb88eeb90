"""ln_gru: an independent float64 reference from the equations, parameter count, gates."""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.cells import build_cell

B, T, I, H = 3, 6, 4, 5
TOL = {"atol": 1e-10, "rtol": 1e-10}


def ln(v: Tensor, gain: Tensor) -> Tensor:
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return gain * (v - mean) / torch.sqrt(var + 1e-5)


def ref_ln_gru(x: Tensor, h: Tensor, p: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    outs, zs, rs = [], [], []
    for t in range(x.size(1)):
        gx = ln(x[:, t] @ p["weight_ih"].T, p["gamma_ih"]) + p["bias_ih"]
        gh = ln(h @ p["weight_hh"].T, p["gamma_hh"]) + p["bias_hh"]
        xr, xz, xn = gx.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        outs.append(h)
        zs.append(z)
        rs.append(r)
    return torch.stack(outs, 1), torch.stack(zs, 1), torch.stack(rs, 1)


def perturbed_cell():
    torch.manual_seed(0)
    cell = build_cell("ln_gru", I, H).double()
    with torch.no_grad():  # non-trivial gains and biases, so a swapped or missing one shows
        for name in ("bias_ih", "bias_hh", "gamma_ih", "gamma_hh"):
            getattr(cell, name).add_(0.5 * torch.randn(3 * H, dtype=torch.float64))
    return cell


def test_against_float64_reference() -> None:
    cell = perturbed_cell()
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    params = {n: p.detach() for n, p in cell.named_parameters()}
    want, z, r = ref_ln_gru(x, h0, params)
    out, state, gates = cell.forward_with_gates(x, h0)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(state, want[:, -1], **TOL)
    torch.testing.assert_close(gates["update"], z, **TOL)
    torch.testing.assert_close(gates["reset"], r, **TOL)


def test_parameter_count_and_initialisation() -> None:
    cell = build_cell("ln_gru", I, H)
    assert sum(p.numel() for p in cell.parameters()) == 3 * H * (I + H) + 12 * H
    assert torch.all(cell.gamma_ih == 1) and torch.all(cell.bias_hh == 0)
    for block in cell.weight_hh.detach().chunk(3):
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=1e-5)


def test_norm_makes_the_input_scale_irrelevant() -> None:
    # LN over W x: scaling x by a positive constant changes nothing once the norm's epsilon is negligible
    cell = perturbed_cell()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, _ = cell(1e3 * x)
    out_scaled, _ = cell(1e5 * x)
    torch.testing.assert_close(out_scaled, out, atol=1e-8, rtol=1e-8)
    assert not torch.allclose(cell(x)[0], out, atol=1e-6)
