"""gru_cho, gru1/gru2/gru3, mgu: independent float64 references, parameter counts, degenerate identities.

The references are written here from the papers' equations, as each cell's docstring gives them (Cho et al.
2014 v3, Dey & Salem 2017, Zhou et al. 2016), and read the weights by name; they never call the cells' own
methods.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from zoo.cells import RecurrentLayer, build_cell

B, T, I, H = 3, 6, 4, 5
TOL = {"atol": 1e-10, "rtol": 1e-10}


def sig(v: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-v))


def ref_gru_cho(
    x: Tensor, h: Tensor, W: Tensor, U: Tensor, b: Tensor, c: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Cho et al. 2014 v3: reset before the recurrent matmul, keep convention."""
    Wr, Wz, Wn = W.chunk(3)
    Ur, Uz, Un = U.chunk(3)
    br, bz, bn = b.chunk(3)
    cr, cz, cn = c.chunk(3)
    outs, zs, rs = [], [], []
    for t in range(x.size(1)):
        xt = x[:, t]
        r = sig(xt @ Wr.T + br + h @ Ur.T + cr)
        z = sig(xt @ Wz.T + bz + h @ Uz.T + cz)
        n = torch.tanh(xt @ Wn.T + bn + (r * h) @ Un.T + cn)
        h = (1 - z) * n + z * h
        outs.append(h)
        zs.append(z)
        rs.append(r)
    return torch.stack(outs, 1), {"update": torch.stack(zs, 1), "reset": torch.stack(rs, 1)}


def ref_gate_variant(
    x: Tensor, h: Tensor, variant: str, Wn: Tensor, U: Tensor, bias: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dey & Salem 2017 GRU1/2/3 with the reset-before candidate, keep convention."""
    if variant == "gru3":
        Un = U
        br, bz, bn = bias.chunk(3)
    else:
        Ur, Uz, Un = U.chunk(3)
        if variant == "gru1":
            br, bz, bn = bias.chunk(3)
        else:
            br = bz = torch.zeros(H, dtype=x.dtype)
            bn = bias
    outs, zs, rs = [], [], []
    for t in range(x.size(1)):
        if variant == "gru3":
            r = sig(br).expand(h.shape)
            z = sig(bz).expand(h.shape)
        elif variant == "gru1":
            r = sig(h @ Ur.T + br)
            z = sig(h @ Uz.T + bz)
        else:
            r = sig(h @ Ur.T)
            z = sig(h @ Uz.T)
        n = torch.tanh(x[:, t] @ Wn.T + (r * h) @ Un.T + bn)
        h = (1 - z) * n + z * h
        outs.append(h)
        zs.append(z)
        rs.append(r)
    return torch.stack(outs, 1), {"update": torch.stack(zs, 1), "reset": torch.stack(rs, 1)}


def ref_mgu(x: Tensor, h: Tensor, W: Tensor, U: Tensor, b: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Zhou et al. 2016: one forget gate, write convention."""
    Wf, Wh = W.chunk(2)
    Uf, Uh = U.chunk(2)
    bf, bh = b.chunk(2)
    outs, fs = [], []
    for t in range(x.size(1)):
        xt = x[:, t]
        f = sig(xt @ Wf.T + h @ Uf.T + bf)
        cand = torch.tanh(xt @ Wh.T + (f * h) @ Uh.T + bh)
        h = (1 - f) * h + f * cand
        outs.append(h)
        fs.append(f)
    return torch.stack(outs, 1), {"forget": torch.stack(fs, 1)}


def weights(cell: RecurrentLayer) -> dict[str, Tensor]:
    return {name: p.detach() for name, p in cell.named_parameters()}


def reference(name: str, cell: RecurrentLayer, x: Tensor, h0: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    w = weights(cell)
    if name == "gru_cho":
        return ref_gru_cho(x, h0, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"])
    if name == "mgu":
        return ref_mgu(x, h0, w["weight_ih"], w["weight_hh"], w["bias"])
    return ref_gate_variant(x, h0, name, w["weight_ih"], w["weight_hh"], w["bias"])


VARIANTS = ["gru_cho", "gru1", "gru2", "gru3", "mgu"]


def make(name: str, seed: int = 0) -> RecurrentLayer:
    torch.manual_seed(seed)
    cell = build_cell(name, I, H).double()
    # torch's init keeps every pre-activation small; widen it so saturation and gating are exercised
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(3.0)
    return cell


@pytest.mark.parametrize("name", VARIANTS)
def test_against_float64_reference(name: str) -> None:
    cell = make(name)
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    want, want_gates = reference(name, cell, x, h0)
    with torch.no_grad():
        out, state, gates = cell.forward_with_gates(x, h0)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(state, want[:, -1], **TOL)
    assert set(gates) == set(want_gates)
    for g, value in want_gates.items():
        torch.testing.assert_close(gates[g], value, **TOL)


@pytest.mark.parametrize("name", VARIANTS)
def test_step_against_float64_reference(name: str) -> None:
    cell = make(name, seed=1)
    x = torch.randn(B, 1, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    want, _ = reference(name, cell, x, h0)
    with torch.no_grad():
        h, _ = cell.step(x[:, 0], h0)
    torch.testing.assert_close(h, want[:, 0], **TOL)


PARAMS = {
    "gru_cho": 3 * (H * I + H * H + 2 * H),
    "gru1": H * I + 3 * H * H + 3 * H,
    "gru2": H * I + 3 * H * H + H,
    "gru3": H * I + H * H + 3 * H,
    "mgu": 2 * (H * I + H * H + H),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_count(name: str) -> None:
    cell = build_cell(name, I, H)
    assert sum(p.numel() for p in cell.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", VARIANTS)
def test_init_is_torch_uniform(name: str) -> None:
    cell = build_cell("gru_cho", 3, 64) if name == "gru_cho" else build_cell(name, 3, 64)
    bound = 1 / 64**0.5
    for pname, p in cell.named_parameters():
        assert p.abs().max() <= bound, pname
        assert p.abs().max() > 0.8 * bound, pname


def as_gru_cho(name: str, cell: RecurrentLayer) -> RecurrentLayer:
    """The ``gru_cho`` that computes what gate variant ``name`` computes: dropped weights zeroed.

    gru_cho's ``W`` rows r, z are zero (the variants' gates never see x) and its ``W_n`` is the variant's;
    ``U`` rows r, z are the variant's (GRU1, GRU2) or zero (GRU3); the variant's single bias goes into
    ``b`` (rows r, z zero for GRU2) and ``c`` is zero.
    """
    w = weights(cell)
    cho = build_cell("gru_cho", I, H).double()
    with torch.no_grad():
        for p in cho.parameters():
            p.zero_()
        cho.weight_ih[2 * H :] = w["weight_ih"]
        if name == "gru3":
            cho.weight_hh[2 * H :] = w["weight_hh"]
        else:
            cho.weight_hh.copy_(w["weight_hh"])
        if name == "gru2":
            cho.bias_ih[2 * H :] = w["bias"]
        else:
            cho.bias_ih.copy_(w["bias"])
    return cho


@pytest.mark.parametrize("name", ["gru1", "gru2", "gru3"])
def test_gate_variant_is_gru_cho_with_dropped_weights_zeroed(name: str) -> None:
    cell = make(name)
    cho = as_gru_cho(name, cell)
    x = torch.randn(B, 2 * T, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    lengths = torch.tensor([2 * T, T, 2])
    with torch.no_grad():
        out, state, gates = cell.forward_with_gates(x, h0, lengths)
        want, want_state, want_gates = cho.forward_with_gates(x, h0, lengths)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(state, want_state, **TOL)
    for g in ("update", "reset"):
        torch.testing.assert_close(gates[g], want_gates[g], **TOL)
    # the mapping is not vacuous: a gru_cho with the input weights of its gates back differs
    with torch.no_grad():
        cho.weight_ih[: 2 * H] = torch.randn(2 * H, I, dtype=torch.float64)
        other, _ = cho(x, h0, lengths)
    assert (other - out).abs().max() > 1e-3


def test_gru3_gates_are_constant_over_time_and_batch() -> None:
    cell = make("gru3")
    x = torch.randn(B, T, I, dtype=torch.float64)
    with torch.no_grad():
        _, _, gates = cell.forward_with_gates(x)
    bias = weights(cell)["bias"]
    torch.testing.assert_close(gates["reset"], sig(bias[:H]).expand(B, T, H), **TOL)
    torch.testing.assert_close(gates["update"], sig(bias[H : 2 * H]).expand(B, T, H), **TOL)


def test_gru_and_gru_cho_differ_with_the_same_weights() -> None:
    cho = make("gru_cho")
    gru = build_cell("gru", I, H).double()
    w = weights(cho)
    with torch.no_grad():
        gru.rnn.weight_ih_l0.copy_(w["weight_ih"])
        gru.rnn.weight_hh_l0.copy_(w["weight_hh"])
        gru.rnn.bias_ih_l0.copy_(w["bias_ih"])
        gru.rnn.bias_hh_l0.copy_(w["bias_hh"])
        x = torch.randn(B, T, I, dtype=torch.float64)
        h0 = torch.randn(B, H, dtype=torch.float64)
        a, _ = cho(x, h0)
        b, _ = gru(x, h0)
        assert (a - b).abs().max() > 1e-2
        # they coincide in the degenerate case r ≡ 1 (reset-gate pre-activation driven to +inf) with c_n = 0
        gru.rnn.bias_ih_l0[:H] = cho.bias_ih[:H] = 1e3
        gru.rnn.bias_hh_l0[2 * H :] = cho.bias_hh[2 * H :] = 0.0
        torch.testing.assert_close(cho(x, h0)[0], gru(x, h0)[0], **TOL)


def test_mgu_uses_the_write_convention() -> None:
    """With the gate shut (f -> 0) the state is carried unchanged; the reversed (Flax) form would reset it."""
    cell = make("mgu")
    with torch.no_grad():
        cell.bias[:H] = -1e3
        x = torch.randn(B, T, I, dtype=torch.float64)
        h0 = torch.randn(B, H, dtype=torch.float64)
        out, state = cell(x, h0)
    torch.testing.assert_close(state, h0, **TOL)
    torch.testing.assert_close(out, h0.unsqueeze(1).expand(B, T, H), **TOL)


def test_gru_cho_keep_convention() -> None:
    """With the update gate shut (z -> 1) the state is kept unchanged."""
    cell = make("gru_cho")
    with torch.no_grad():
        cell.bias_ih[H : 2 * H] = 1e3
        x = torch.randn(B, T, I, dtype=torch.float64)
        h0 = torch.randn(B, H, dtype=torch.float64)
        _, state = cell(x, h0)
    torch.testing.assert_close(state, h0, **TOL)


def test_gru_cho_weights_copy_from_torch_gru() -> None:
    """The layout is torch's: an nn.GRU's weights load by renaming, and U_n meets r ⊙ h (reset before)."""
    torch.manual_seed(0)
    twin = torch.nn.GRU(I, H, batch_first=True).double()
    cho = build_cell("gru_cho", I, H).double()
    cho.load_state_dict({k.removesuffix("_l0"): v for k, v in twin.state_dict().items()})
    x = torch.randn(B, T, I, dtype=torch.float64)
    with torch.no_grad():
        out, _ = cho(x)
    want, _ = ref_gru_cho(x, torch.zeros(B, H, dtype=torch.float64), *(p.detach() for p in twin.parameters()))
    torch.testing.assert_close(out, want, **TOL)
