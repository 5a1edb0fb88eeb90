"""Hand-written kernels (zoo.cells.kernels) against plain autograd loops of the same equations.

Float64, tiny sizes: outputs, final states and every gradient equal the autograd loop's to 1e-10,
``torch.autograd.gradcheck`` passes, with and without a length mask, from a given initial
state. Plus the dispatch rules (fallback under ``torch.func`` transforms, off switch).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch

from zoo.cells import kernels as K
from zoo.cells.kernels import layer_norm, linear, minimal, reset_before, scaffold

B, T, H = 3, 5, 4
F64 = torch.float64
LENGTHS = torch.tensor([5, 2, 3])


def _mask() -> torch.Tensor:
    return (torch.arange(T).unsqueeze(0) < LENGTHS.unsqueeze(1)).unsqueeze(-1)


def _r(*shape: int, positive: bool = False) -> torch.Tensor:
    t = torch.rand(*shape, dtype=F64) if positive else torch.randn(*shape, dtype=F64)
    return t.requires_grad_()


def _seq(width: int, positive: bool = False) -> torch.Tensor:
    return _r(B, T, width * H, positive=positive)


# name -> (builder of the differentiable arguments, kernel Function, eager loop)
Case = tuple[Callable[[], tuple[torch.Tensor | None, ...]], Callable[..., object], Callable[..., object]]
CASES: dict[str, Case] = {
    "ln_gru": (
        lambda: (_seq(3), _r(B, H), _r(3 * H, H), _r(3 * H), _r(3 * H)),
        layer_norm._LNGRU.apply,
        partial(K.ln_gru, reference=True),
    ),
    "ln_gru_nobias": (
        lambda: (_seq(3), _r(B, H), _r(3 * H, H), _r(3 * H), None),
        layer_norm._LNGRU.apply,
        partial(K.ln_gru, reference=True),
    ),
    "gru_cho": (
        lambda: (_seq(3), _r(B, H), _r(H, H), _r(H), _r(2 * H, H), _r(2 * H)),
        reset_before._GRUResetBefore.apply,
        partial(K.gru_reset_before, reference=True),
    ),
    "gru1": (
        lambda: (_seq(1), _r(B, H), _r(H, H), _r(H), _r(2 * H, H), _r(2 * H)),
        reset_before._GRUResetBefore.apply,
        partial(K.gru_reset_before, reference=True),
    ),
    "gru2": (
        lambda: (_seq(1), _r(B, H), _r(H, H), None, _r(2 * H, H), None),
        reset_before._GRUResetBefore.apply,
        partial(K.gru_reset_before, reference=True),
    ),
    "gru3": (
        lambda: (_seq(1), _r(B, H), _r(H, H), _r(H), None, _r(2 * H)),
        reset_before._GRUResetBefore.apply,
        partial(K.gru_reset_before, reference=True),
    ),
    "mgu": (
        lambda: (_seq(2), _r(B, H), _r(H, H), _r(H), _r(H, H), _r(H)),
        minimal._MGU.apply,
        partial(K.mgu, reference=True),
    ),
    "linear": (
        lambda: (_seq(1, positive=True), _seq(1), _r(B, H)),
        lambda *args: linear._LinearRecurrence.apply(*args, "loop"),
        partial(K.linear_recurrence, reference=True),
    ),
    "min_gru": (
        lambda: (_seq(2), _r(B, H)),
        linear._MinGRU.apply,
        partial(K.min_gru_packed, reference=True),
    ),
}


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_equals_autograd_loop(name: str, masked: bool) -> None:
    torch.manual_seed(0)
    build, kernel, loop = CASES[name]
    args = build()
    mask = _mask() if masked else None
    out_k, h_k = kernel(*args, mask)  # type: ignore[operator]
    out_l, h_l = loop(*args, mask)  # type: ignore[operator]
    assert out_k.shape == out_l.shape and out_k.is_contiguous()
    torch.testing.assert_close(out_k, out_l, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_k, h_l, atol=1e-10, rtol=0)
    # every gradient, from a random weighting of the outputs and the final state
    w_out, w_h = torch.randn_like(out_l), torch.randn_like(h_l)
    leaves = [a for a in args if a is not None]
    g_k = torch.autograd.grad((out_k * w_out).sum() + (h_k * w_h).sum(), leaves)
    g_l = torch.autograd.grad((out_l * w_out).sum() + (h_l * w_h).sum(), leaves)
    for a, b in zip(g_k, g_l, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    if masked:  # padding: output exactly zero, state from each sequence's last real step
        for i, n in enumerate(LENGTHS.tolist()):
            if n < T:
                assert out_k[i, n:].abs().max().item() == 0.0
            torch.testing.assert_close(h_k[i], out_k[i, n - 1], atol=0, rtol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_blocked_backward_across_blocks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 2 steps over T=5: the per-block factors and weight gradients join up exactly."""
    monkeypatch.setattr(scaffold, "CHUNK", 2)
    for masked in (True, False):
        test_kernel_equals_autograd_loop(name, masked)


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_gradcheck(name: str, masked: bool) -> None:
    torch.manual_seed(1)
    build, kernel, _ = CASES[name]
    args = build()
    mask = _mask() if masked else None
    present = [i for i, a in enumerate(args) if a is not None]

    def fn(*xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = list(args)
        for i, x in zip(present, xs, strict=True):
            full[i] = x
        return kernel(*full, mask)  # type: ignore[operator,no-any-return]

    # ln_gru: the full Jacobian runs aten's layer norm (a parallel region) thousands of times, tens of
    # seconds on a busy 2-core machine; fast mode checks random projections of it (the float64
    # comparison above checks every gradient exactly)
    fast = name.startswith("ln_gru")
    assert torch.autograd.gradcheck(fn, tuple(args[i] for i in present), eps=1e-6, atol=1e-8, fast_mode=fast)


def test_only_final_state_needs_grad() -> None:
    torch.manual_seed(2)
    gi, h0, u, gamma, c = CASES["ln_gru"][0]()
    _, h = K.ln_gru(gi, h0, u, gamma, c)
    (g,) = torch.autograd.grad(h.sum(), [u])
    _, h_l = K.ln_gru(gi, h0, u, gamma, c, reference=True)
    (g_l,) = torch.autograd.grad(h_l.sum(), [u])
    torch.testing.assert_close(g, g_l, atol=1e-10, rtol=0)


def test_float32_matches_float64() -> None:
    torch.manual_seed(3)
    gi, h0, u, gamma, c = (a.detach() for a in CASES["ln_gru"][0]())  # type: ignore[union-attr]
    out32, _ = K.ln_gru(gi.float(), h0.float(), u.float(), gamma.float(), c.float())
    out64, _ = K.ln_gru(gi, h0, u, gamma, c)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=0)


def test_output_edit_does_not_corrupt_backward() -> None:
    torch.manual_seed(4)
    gi, h0, u, gamma, c = CASES["ln_gru"][0]()
    out, _ = K.ln_gru(gi, h0, u, gamma, c)
    ref, _ = K.ln_gru(gi, h0, u, gamma, c, reference=True)
    (g_ref,) = torch.autograd.grad(ref.sum(), [u])
    loss = out.sum()
    out.detach().zero_()  # the output has its own storage, the saved states are untouched
    (g,) = torch.autograd.grad(loss, [u])
    torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=0)


def test_dispatch_rules() -> None:
    x = torch.zeros(2, 3)
    assert K.kernels_enabled(x, None, x.double())
    assert not K.kernels_enabled(x.half())
    assert not K.kernels_enabled(torch.zeros(2, dtype=torch.int64))
    with K.use_kernels(False):
        assert not K.kernels_enabled(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast's casts belong to the loop
        assert not K.kernels_enabled(x)
    assert K.kernels_enabled(x)


def test_functorch_falls_back_and_agrees() -> None:
    torch.manual_seed(5)
    gi, h0, u, gamma, c = (a.detach() for a in CASES["ln_gru"][0]())  # type: ignore[union-attr]

    def loss(u_: torch.Tensor) -> torch.Tensor:
        out, h = K.ln_gru(gi, h0, u_, gamma, c)
        return out.sum() + h.sum()

    g_func = torch.func.grad(loss)(u)  # a transform: the plain loop runs
    u_req = u.clone().requires_grad_()
    (g_kernel,) = torch.autograd.grad(loss(u_req), [u_req])
    torch.testing.assert_close(g_func, g_kernel, atol=1e-10, rtol=0)


def test_functional_call_uses_kernel() -> None:
    torch.manual_seed(6)
    lin = torch.nn.Linear(H, 3 * H).double()
    rec = torch.nn.Linear(H, 3 * H).double()
    mod = torch.nn.ModuleDict({"lin": lin, "rec": rec})
    x = torch.randn(B, T, H, dtype=F64)

    def run(params: dict[str, torch.Tensor]) -> torch.Tensor:
        gi = torch.func.functional_call(
            mod["lin"], {k[4:]: v for k, v in params.items() if k[:3] == "lin"}, (x,)
        )
        weight = params["rec.weight"]
        out, _ = K.gru_reset_before(
            gi, torch.zeros(B, H, dtype=F64), weight[2 * H :, :], None, weight[: 2 * H]
        )
        return out

    params = {k: v.detach().clone().requires_grad_() for k, v in mod.named_parameters()}
    assert torch.autograd.gradcheck(
        lambda *ps: run(dict(zip(params, ps, strict=True))), tuple(params.values())
    )


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match=r"3\*H"):
        K.ln_gru(torch.zeros(B, T, 2 * H), torch.zeros(B, H), torch.zeros(3 * H, H), torch.ones(3 * H))
    with pytest.raises(ValueError, match="mask must be a bool"):
        K.mgu(
            torch.zeros(B, T, 2 * H),
            torch.zeros(B, H),
            torch.zeros(H, H),
            None,
            torch.zeros(H, H),
            None,
            mask=torch.ones(B, T, 1),
        )


@pytest.mark.parametrize("chunk", [2, 3, 16], ids=["block2", "block3", "one-block"])
@pytest.mark.parametrize(
    "name,build,wanted",
    [
        # which of the arguments need a gradient: each kernel skips the others' buffers and matmuls
        ("mgu", lambda: (_seq(2), _r(B, H), _r(H, H), None, _r(H, H), None), (0, 4)),
        ("mgu", lambda: (_seq(2), _r(B, H), _r(H, H), _r(H), _r(H, H), _r(H)), (2, 5)),
        ("min_gru", lambda: (_seq(2), None), (0,)),
        ("min_gru", lambda: (_seq(2), _r(B, H)), (1,)),
    ],
    ids=["mgu-nobias-x-uh", "mgu-uf-bh", "min_gru-proj", "min_gru-h0"],
)
def test_blocked_kernels_partial_gradients(
    name: str,
    build: Callable[[], tuple[torch.Tensor | None, ...]],
    wanted: tuple[int, ...],
    chunk: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forward and backward blocked in steps of ``chunk`` over T=5 (a last, shorter block; a boundary
    inside the sequence), masked, with only some arguments needing a gradient: equal to the loop."""
    monkeypatch.setattr(scaffold, "CHUNK", chunk)
    torch.manual_seed(4)
    _, kernel, loop = CASES[name]
    args = build()
    for i, a in enumerate(args):
        if a is not None and i not in wanted:
            a.requires_grad_(False)
    mask = _mask()
    out_k, h_k = kernel(*args, mask)  # type: ignore[operator]
    out_l, h_l = loop(*args, mask)  # type: ignore[operator]
    torch.testing.assert_close(out_k, out_l, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_k, h_l, atol=1e-10, rtol=0)
    w_out, w_h = torch.randn_like(out_l), torch.randn_like(h_l)
    leaves = [args[i] for i in wanted]
    g_k = torch.autograd.grad((out_k * w_out).sum() + (h_k * w_h).sum(), leaves)  # type: ignore[arg-type]
    g_l = torch.autograd.grad((out_l * w_out).sum() + (h_l * w_h).sum(), leaves)  # type: ignore[arg-type]
    for a, b in zip(g_k, g_l, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("chunk", [2, 16], ids=["block2", "one-block"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_min_gru_packed_equals_loop(masked: bool, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packed-projection minGRU kernel: outputs and the gradients of ``[k, h~]`` and ``h0`` (one
    buffer in the projection's layout) equal the loop's over the two halves."""
    monkeypatch.setattr(scaffold, "CHUNK", chunk)
    torch.manual_seed(5)
    proj, h0 = _seq(2), _r(B, H)
    mask = _mask() if masked else None
    out_k, h_k = K.min_gru_packed(proj, h0, mask)
    k, cand = proj.chunk(2, -1)
    z = torch.sigmoid(k)  # the recurrence written out: h = (1 - z) h + z h~
    out_l, h_l = K.linear_recurrence(1 - z, z * cand, h0, mask, reference=True)
    torch.testing.assert_close(out_k, out_l, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_k, h_l, atol=1e-10, rtol=0)
    w_out, w_h = torch.randn_like(out_l), torch.randn_like(h_l)
    g_k = torch.autograd.grad((out_k * w_out).sum() + (h_k * w_h).sum(), [proj, h0])
    g_l = torch.autograd.grad((out_l * w_out).sum() + (h_l * w_h).sum(), [proj, h0])
    assert g_k[0].is_contiguous()
    for a, b in zip(g_k, g_l, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="2H"):
        K.min_gru_packed(proj[..., :-1], h0)
