"""rnn_tanh, rnn_relu, lstm, gru: independent float64 references and weight-copy parity with torch.nn."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from zoo.cells import build_cell

B, T, I, H = 3, 6, 4, 5


def ref_rnn(x: Tensor, h: Tensor, W: Tensor, U: Tensor, b: Tensor, c: Tensor, relu: bool) -> Tensor:
    outs = []
    for t in range(x.size(1)):
        pre = x[:, t] @ W.T + b + h @ U.T + c
        h = pre.relu() if relu else pre.tanh()
        outs.append(h)
    return torch.stack(outs, 1)


def ref_lstm(x: Tensor, h: Tensor, c: Tensor, W: Tensor, U: Tensor, b: Tensor, bb: Tensor) -> Tensor:
    outs = []
    Wi, Wf, Wg, Wo = W.chunk(4)
    Ui, Uf, Ug, Uo = U.chunk(4)
    bi, bf, bg, bo = b.chunk(4)
    ci, cf, cg, co = bb.chunk(4)
    for t in range(x.size(1)):
        xt = x[:, t]
        i = torch.sigmoid(xt @ Wi.T + bi + h @ Ui.T + ci)
        f = torch.sigmoid(xt @ Wf.T + bf + h @ Uf.T + cf)
        g = torch.tanh(xt @ Wg.T + bg + h @ Ug.T + cg)
        o = torch.sigmoid(xt @ Wo.T + bo + h @ Uo.T + co)
        c = f * c + i * g
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1)


def ref_gru(x: Tensor, h: Tensor, W: Tensor, U: Tensor, b: Tensor, bb: Tensor) -> Tensor:
    Wr, Wz, Wn = W.chunk(3)
    Ur, Uz, Un = U.chunk(3)
    br, bz, bn = b.chunk(3)
    cr, cz, cn = bb.chunk(3)
    outs = []
    for t in range(x.size(1)):
        xt = x[:, t]
        r = torch.sigmoid(xt @ Wr.T + br + h @ Ur.T + cr)
        z = torch.sigmoid(xt @ Wz.T + bz + h @ Uz.T + cz)
        n = torch.tanh(xt @ Wn.T + bn + r * (h @ Un.T + cn))
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, 1)


def weights(cell: nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r = cell if isinstance(cell, nn.RNNBase) else cell.rnn
    return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0


@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_against_float64_reference(name: str) -> None:
    torch.manual_seed(0)
    cell = build_cell(name, I, H).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    c0 = torch.randn(B, H, dtype=torch.float64)
    W, U, b, c = (p.detach() for p in weights(cell))
    with torch.no_grad():
        if name == "lstm":
            out, _ = cell(x, (h0, c0))
            want = ref_lstm(x, h0, c0, W, U, b, c)
        elif name == "gru":
            out, _ = cell(x, h0)
            want = ref_gru(x, h0, W, U, b, c)
        else:
            out, _ = cell(x, h0)
            want = ref_rnn(x, h0, W, U, b, c, relu=name == "rnn_relu")
    torch.testing.assert_close(out, want, atol=1e-10, rtol=1e-10)


def torch_twin(name: str) -> nn.RNNBase:
    if name == "lstm":
        return nn.LSTM(I, H, batch_first=True)
    if name == "gru":
        return nn.GRU(I, H, batch_first=True)
    return nn.RNN(I, H, batch_first=True, nonlinearity=name.split("_")[1])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_weight_copy_parity_with_torch(name: str, dtype: torch.dtype, tol: float) -> None:
    torch.manual_seed(0)
    cell = build_cell(name, I, H).to(dtype)
    twin = torch_twin(name).to(dtype)
    with torch.no_grad():
        for mine, theirs in zip(weights(cell), weights(twin), strict=True):
            theirs.copy_(mine)
    x = torch.randn(B, T, I, dtype=dtype)
    out, state = cell(x)
    want, hn = twin(x)
    torch.testing.assert_close(out, want, atol=tol, rtol=tol)
    final = hn[0][0] if name == "lstm" else hn[0]
    got = state[0] if isinstance(state, tuple) else state
    torch.testing.assert_close(got, final, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_parameter_count(name: str) -> None:
    per_gate = I * H + H * H + 2 * H
    gates = {"lstm": 4, "gru": 3}.get(name, 1)
    cell = build_cell(name, I, H)
    assert sum(p.numel() for p in cell.parameters()) == gates * per_gate


def test_gru_update_gate_matches_equation() -> None:
    torch.manual_seed(0)
    cell = build_cell("gru", I, H).double()
    x = torch.randn(1, 1, I, dtype=torch.float64)
    W, U, b, c = (p.detach() for p in weights(cell))
    _, _, gates = cell.forward_with_gates(x)
    z = torch.sigmoid(x[0, 0] @ W[H : 2 * H].T + b[H : 2 * H] + c[H : 2 * H])
    torch.testing.assert_close(gates["update"][0, 0], z)
