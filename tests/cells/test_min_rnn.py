"""min_gru, min_lstm and the linear recurrence: float64 references, scan == loop, stability."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from zoo.cells import build_cell
from zoo.cells.kernels import linear_recurrence
from zoo.cells.min_rnn import choose_algorithm

B, I, H = 3, 4, 5
TOL = {"atol": 1e-10, "rtol": 1e-10}
NAMES = ["min_gru", "min_lstm"]


def ref_min_gru(x: Tensor, h: Tensor, W: Tensor, b: Tensor) -> Tensor:
    Wz, Wh = W.chunk(2)
    bz, bh = b.chunk(2)
    outs = []
    for t in range(x.size(1)):
        z = torch.sigmoid(x[:, t] @ Wz.T + bz)
        cand = x[:, t] @ Wh.T + bh
        h = (1 - z) * h + z * cand
        outs.append(h)
    return torch.stack(outs, 1)


def ref_min_lstm(x: Tensor, h: Tensor, W: Tensor, b: Tensor) -> Tensor:
    Wf, Wi, Wh = W.chunk(3)
    bf, bi, bh = b.chunk(3)
    outs = []
    for t in range(x.size(1)):
        f = torch.sigmoid(x[:, t] @ Wf.T + bf)
        i = torch.sigmoid(x[:, t] @ Wi.T + bi)
        cand = x[:, t] @ Wh.T + bh
        h = f / (f + i) * h + i / (f + i) * cand
        outs.append(h)
    return torch.stack(outs, 1)


REFS = {"min_gru": ref_min_gru, "min_lstm": ref_min_lstm}


def make(name: str, mode: str, dtype: torch.dtype = torch.float64, size: tuple[int, int] = (I, H)):
    torch.manual_seed(0)
    return build_cell(name, *size, mode=mode).to(dtype)


def reference(name: str, cell, x: Tensor, h0: Tensor) -> Tensor:
    W = cell.linear.weight.detach().double()
    b = cell.linear.bias.detach().double()
    return REFS[name](x.double(), h0.double(), W, b)


@pytest.mark.parametrize("mode", ["scan", "loop"])
@pytest.mark.parametrize("name", NAMES)
def test_against_float64_reference(name: str, mode: str) -> None:
    cell = make(name, mode)
    x = torch.randn(B, 37, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    out, state = cell(x, h0)
    want = reference(name, cell, x, h0)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(state, want[:, -1], **TOL)


@pytest.mark.parametrize("name,parts", [("min_gru", 2), ("min_lstm", 3)])
def test_parameter_count(name: str, parts: int) -> None:
    cell = build_cell(name, I, H)
    assert sum(p.numel() for p in cell.parameters()) == parts * H * I + parts * H


@pytest.mark.parametrize("name", NAMES)
def test_scan_equals_loop_float64_with_gradients(name: str) -> None:
    x = torch.randn(B, 100, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    results = []
    for mode in ("scan", "loop"):
        cell = make(name, mode)
        xg, hg = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
        out, state = cell(xg, hg, lengths=torch.tensor([100, 61, 9]))
        (out.sin().sum() + state.square().sum()).backward()
        results.append([out, state, xg.grad, hg.grad, *(p.grad for p in cell.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_scan_equals_loop_float32_at_512(name: str) -> None:
    x = torch.randn(2, 512, 8)
    scan, _ = make(name, "scan", torch.float32, (8, 16))(x)
    loop, _ = make(name, "loop", torch.float32, (8, 16))(x)
    torch.testing.assert_close(scan, loop, atol=1e-4, rtol=1e-4)
    want = reference(name, make(name, "loop", torch.float64, (8, 16)), x, torch.zeros(2, 16))
    torch.testing.assert_close(scan.double(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_scan_is_stable_at_4096(name: str) -> None:
    torch.manual_seed(1)
    x = 3 * torch.randn(1, 4096, 4)  # large inputs: gates near 0 and 1, candidates of both signs
    scan, _ = make(name, "scan", torch.float32, (4, 8))(x)
    loop, _ = make(name, "loop", torch.float32, (4, 8))(x)
    assert torch.isfinite(scan).all()
    torch.testing.assert_close(scan, loop, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_scan_continues_from_a_state(name: str) -> None:
    cell = make(name, "scan")
    x = torch.randn(B, 80, I, dtype=torch.float64)
    full, full_state = cell(x)
    first, s = cell(x[:, :40])
    second, s2 = cell(x[:, 40:], s)
    torch.testing.assert_close(torch.cat([first, second], 1), full, **TOL)
    torch.testing.assert_close(s2, full_state, **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_scan_respects_padding(name: str) -> None:
    cell = make(name, "scan")
    x = torch.randn(B, 50, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64)
    lengths = [50, 23, 1]
    out, state = cell(x, h0, torch.tensor(lengths))
    for b, n in enumerate(lengths):
        want = reference(name, cell, x[b : b + 1, :n], h0[b : b + 1])
        torch.testing.assert_close(out[b : b + 1, :n], want, **TOL)
        torch.testing.assert_close(state[b : b + 1], want[:, -1], **TOL)
        assert torch.all(out[b, n:] == 0)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_of_the_scan(name: str) -> None:
    torch.manual_seed(2)
    cell = build_cell(name, 2, 2, mode="scan").double()
    x = torch.randn(2, 11, 2, dtype=torch.float64, requires_grad=True)  # > 8 steps: the chunked path
    h0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([11, 6])
    assert torch.autograd.gradcheck(lambda x, h: cell(x, h, lengths)[0], (x, h0), eps=1e-6, atol=1e-6)


def test_linear_scan_signed_inputs_and_zero_coefficients() -> None:
    a = torch.rand(2, 300, 3, dtype=torch.float64)
    a[:, 100] = 0.0  # a zero coefficient forgets everything before it
    b = torch.randn(2, 300, 3, dtype=torch.float64)
    h0 = torch.randn(2, 3, dtype=torch.float64)
    h, outs = h0, []
    for t in range(300):
        h = a[:, t] * h + b[:, t]
        outs.append(h)
    want = torch.stack(outs, 1)
    for algorithm in ("scan", "loop"):
        out, h_t = linear_recurrence(a, b, h0, algorithm=algorithm)
        torch.testing.assert_close(out, want, **TOL)
        torch.testing.assert_close(h_t, want[:, -1], **TOL)
    with pytest.raises(ValueError, match="algorithm must be one of 'loop', 'scan'"):
        linear_recurrence(a, b, h0, algorithm="fast")


@pytest.mark.parametrize("algorithm", ["loop", "scan"])
def test_linear_recurrence_equals_the_autograd_loop_with_gradients(algorithm: str) -> None:
    """Both algorithms share one hand-written backward: outputs, final state and the gradients of ``a``,
    ``b`` and ``h0`` equal plain autograd's, with padding, past one chunk of the scan."""
    torch.manual_seed(3)
    a = torch.rand(3, 40, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 40, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mask = (torch.arange(40) < torch.tensor([40, 17, 9]).unsqueeze(1)).unsqueeze(-1)
    out, h_t = linear_recurrence(a, b, h0, mask, algorithm)
    want, want_h = linear_recurrence(a, b, h0, mask, reference=True)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(h_t, want_h, **TOL)
    w_out, w_h = torch.randn_like(out), torch.randn_like(h_t)
    got = torch.autograd.grad((out * w_out).sum() + (h_t * w_h).sum(), [a, b, h0])
    ref = torch.autograd.grad((want * w_out).sum() + (want_h * w_h).sum(), [a, b, h0])
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, **TOL)


def test_gates() -> None:
    x = torch.randn(B, 9, I, dtype=torch.float64)
    gru = make("min_gru", "auto")
    _, _, g = gru.forward_with_gates(x)
    Wz, bz = gru.linear.weight[:H].detach(), gru.linear.bias[:H].detach()
    torch.testing.assert_close(g["update"], torch.sigmoid(x @ Wz.T + bz), **TOL)
    _, _, g = make("min_lstm", "auto").forward_with_gates(x)
    torch.testing.assert_close(g["forget"] + g["input"], torch.ones_like(g["input"]), **TOL)


def test_extreme_preactivations_stay_finite() -> None:
    cell = make("min_lstm", "scan", torch.float32)
    with torch.no_grad():
        cell.linear.weight.mul_(1e3)
    x = torch.randn(B, 64, I, requires_grad=True)
    out, _ = cell(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and x.grad is not None and torch.isfinite(x.grad).all()


def test_mode_choice_and_bad_mode() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_algorithm("auto", 16, cpu) == "loop"
    assert choose_algorithm("auto", 4096, cpu) == "loop"
    assert choose_algorithm("scan", 16, cpu) == "scan"
    assert choose_algorithm("auto", 128, gpu) == "scan"
    assert choose_algorithm("loop", 4096, gpu) == "loop"
    with pytest.raises(ValueError, match="mode must be one of auto, scan, loop"):
        build_cell("min_gru", I, H, mode="parallel")
