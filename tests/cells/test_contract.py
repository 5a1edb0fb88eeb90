"""The layer contract, checked for every registered cell (generated from the registry).

A new cell is tested here the moment it is registered: causality, gradcheck, gradients, seeded
initialisation, gate inspection, and clear errors on bad input. Float64 at tiny sizes. Step/forward
equality, continuation and padding are properties searched by hypothesis in ``test_properties.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import zoo
from zoo.cells import RecurrentLayer, build_cell, get_cell_spec, list_cells
from zoo.cells.base import State
from zoo.errors import ZooConfigError

CELLS = list_cells()
B, T, I, H = 3, 7, 4, 5


def make(name: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> RecurrentLayer:
    torch.manual_seed(seed)
    return build_cell(name, I, H).to(dtype)


def parts(state: State) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def assert_state_close(a: State, b: State, **kw: float) -> None:
    for x, y in zip(parts(a), parts(b), strict=True):
        torch.testing.assert_close(x, y, **kw)


TOL = {"atol": 1e-10, "rtol": 1e-10}


def test_all_fourteen_builtin_cells_are_registered() -> None:
    expected = {
        "rnn_tanh", "rnn_relu", "lstm", "gru", "gru_cho", "gru1", "gru2", "gru3",
        "mgu", "li_gru", "ln_gru", "min_gru", "min_lstm", "indrnn",
    }  # fmt: skip
    missing = expected - set(CELLS)
    assert not missing, f"cells missing from the registry: {sorted(missing)}"


@pytest.mark.parametrize("name", CELLS)
def test_causality(name: str) -> None:
    cell = make(name)
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, _ = cell(x)
    t = T // 2
    x2 = x.clone()
    x2[:, t] += torch.randn(B, I, dtype=torch.float64)
    out2, _ = cell(x2)
    torch.testing.assert_close(out2[:, :t], out[:, :t], **TOL)
    assert not torch.allclose(out2[:, t:], out[:, t:])


@pytest.mark.parametrize("name", CELLS)
def test_gradcheck(name: str) -> None:
    torch.manual_seed(1)
    cell = build_cell(name, 3, 2).to(torch.float64)
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in cell.parameters())
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)

    def fn(x: Tensor, *ps: Tensor) -> Tensor:
        out, _ = torch.func.functional_call(cell, dict(zip(names, ps, strict=True)), (x,))
        return out

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_every_parameter_gets_a_gradient_in_float32(name: str) -> None:
    cell = make(name, torch.float32).train()
    x = torch.randn(B, T, I)
    out, state = cell(x, lengths=torch.tensor([T, 4, 2]))
    (out.square().sum() + sum(p.square().sum() for p in parts(state))).backward()
    for pname, p in cell.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", CELLS)
def test_reset_parameters_is_seeded_and_changes_weights(name: str) -> None:
    cell = make(name, torch.float32, seed=3)
    before = [p.detach().clone() for p in cell.parameters()]
    torch.manual_seed(4)
    cell.reset_parameters()
    after = [p.detach().clone() for p in cell.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    torch.manual_seed(4)
    cell.reset_parameters()
    for a, p in zip(after, cell.parameters(), strict=True):
        assert torch.equal(a, p)


@pytest.mark.parametrize("name", CELLS)
def test_gate_inspection(name: str) -> None:
    cell = make(name)
    x = torch.randn(B, T, I, dtype=torch.float64)
    lengths = torch.tensor([T, 5, 2])
    if not cell.gate_names:
        with pytest.raises(NotImplementedError, match="no gates"):
            cell.forward_with_gates(x)
        return
    out, state = cell(x, lengths=lengths)
    out_g, state_g, gates = cell.forward_with_gates(x, lengths=lengths)
    torch.testing.assert_close(out_g, out, **TOL)
    assert_state_close(state_g, state, **TOL)
    assert set(gates) == set(cell.gate_names)
    for g in gates.values():
        assert g.shape == (B, T, H)
        assert torch.all((g >= 0) & (g <= 1))
        assert torch.all(g[2, 2:] == 0), "gates on padding are zero"


@pytest.mark.parametrize("name", CELLS)
def test_bad_input_is_a_clear_error(name: str) -> None:
    cell = make(name, torch.float32)
    with pytest.raises(ValueError, match=r"\[batch, time, input_size=4\]"):
        cell(torch.randn(T, I))
    with pytest.raises(ValueError, match="input_size=4 but x has 6 features"):
        cell(torch.randn(B, T, 6))
    with pytest.raises(ValueError, match="must not exceed the time dimension"):
        cell(torch.randn(B, T, I), lengths=torch.tensor([T + 1, 2, 2]))
    with pytest.raises(ValueError, match="at least 1"):
        cell(torch.randn(B, T, I), lengths=torch.tensor([T, 0, 2]))
    with pytest.raises(ValueError, match=r"shape \[batch\]"):
        cell(torch.randn(B, T, I), lengths=torch.tensor([T, 2]))
    with pytest.raises(ValueError, match="integers"):
        cell(torch.randn(B, T, I), lengths=torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="state must"):
        cell(torch.randn(B, T, I), torch.zeros(B + 1, H))
    with pytest.raises(ValueError, match="does not take option"):
        build_cell(name, I, H, no_such_option=1)


def test_unknown_cell_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown cell 'nonexistent'") as err:
        build_cell("nonexistent", 3, 4)
    for name in CELLS:
        assert name in str(err.value)


def test_registry_metadata_and_public_api() -> None:
    assert zoo.list_cells() == CELLS
    assert zoo.list_cells("rnn_*") == ["rnn_relu", "rnn_tanh"]
    for name in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
        assert get_cell_spec(name).fused
    for name in CELLS:
        spec = get_cell_spec(name)
        assert spec.paper, f"{name} has no paper citation"
        assert spec.cls.__doc__ and len(spec.cls.__doc__) > 80, f"{name} needs its equations in the docstring"


@pytest.mark.parametrize(("arg", "value"), [("input_size", 0), ("hidden_size", 0), ("hidden_size", -5)])
@pytest.mark.parametrize("name", CELLS)
def test_invalid_sizes_name_the_argument_and_the_range(name: str, arg: str, value: int) -> None:
    sizes = {"input_size": I, "hidden_size": H, arg: value}
    with pytest.raises(ZooConfigError, match=rf"{arg} must be an integer >= 1 \(.*\), got {value}"):
        build_cell(name, **sizes)


@pytest.mark.parametrize("value", [True, 2.0, "4", None])
def test_sizes_must_be_integers(value: object) -> None:
    with pytest.raises(ZooConfigError, match=f"hidden_size must be an integer >= 1 .*, got {value!r}"):
        build_cell("gru", I, value)  # type: ignore[arg-type]
