"""Properties of every registered cell and of the encoder, searched by hypothesis over small sizes.

Generated from the registry, so a new cell (a plugin's too) is covered the moment it is registered. Each
property is drawn over batch, time, input and hidden sizes from 1, float32 and float64, train and eval
mode, with and without the hand-written kernels, with and without an initial state and lengths (1 and
full among them). Every buffer a ``zoo.cells`` module allocates with ``empty`` is NaN-filled first
(``kernel_support.nan_filled_allocations``), so a read of memory never written fails the comparison.

Profiles (``tests/conftest.py``): ``ci`` (default, derandomized, few examples per property) and
``HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_support import WIRED, Allocations, nan_filled_allocations
from torch import Tensor, nn

from zoo import RecurrentEncoder
from zoo.cells import RecurrentLayer, build_cell, list_cells
from zoo.cells.kernels import scaffold, use_kernels

CELLS = list_cells()
DTYPES = (torch.float64, torch.float32)
TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-10}, torch.float32: {"rtol": 1e-4, "atol": 1e-5}}
# the encoder stacks up to four layers per example: fewer examples keep the suite's time in bounds
ENCODER_EXAMPLES = max(2, settings.default.max_examples // 2)
_R = TypeVar("_R")


@dataclass(frozen=True)
class Case:
    """One drawn configuration."""

    batch: int
    time: int
    inp: int
    hid: int
    dtype: torch.dtype
    train: bool
    kernels: bool
    state: bool
    lengths: tuple[int, ...] | None
    chunk: int  # the kernels' block length (scaffold.CHUNK); small ones cross blocks at small T
    seed: int

    @property
    def tol(self) -> dict[str, float]:
        return TOL[self.dtype]


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    min_time: int = 1,
    lengths: bool | None = None,
    dtype: torch.dtype | None = None,
    kernels: bool | None = None,
) -> Case:
    """A configuration; ``lengths``/``dtype``/``kernels`` fixed where given, else drawn."""
    batch = draw(st.integers(1, 4))
    time = draw(st.integers(min_time, 6))
    with_lengths = draw(st.booleans()) if lengths is None else lengths
    lens = None
    if with_lengths:
        one_length = st.one_of(st.just(1), st.just(time), st.integers(1, time))
        lens = tuple(draw(st.lists(one_length, min_size=batch, max_size=batch)))
    return Case(
        batch=batch,
        time=time,
        inp=draw(st.integers(1, 5)),
        hid=draw(st.integers(1, 5)),
        dtype=draw(st.sampled_from(DTYPES)) if dtype is None else dtype,
        train=draw(st.booleans()),
        kernels=draw(st.booleans()) if kernels is None else kernels,
        state=draw(st.booleans()),
        lengths=lens,
        chunk=draw(st.sampled_from([scaffold.CHUNK, 1, 2, 3])),
        seed=draw(st.integers(0, 2**16)),
    )


# -- helpers -------------------------------------------------------------------------------------------


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def assert_unchanged(module: nn.Module, before: dict[str, Tensor], what: str) -> None:
    changed = [name for name, p in module.named_parameters() if not torch.equal(p, before[name])]
    assert not changed, f"{what} changed the parameters {changed}"


def make_cell(name: str, case: Case) -> RecurrentLayer:
    torch.manual_seed(case.seed)
    return build_cell(name, case.inp, case.hid).to(case.dtype).train(case.train)


def make_inputs(module: Any, case: Case) -> tuple[Tensor, Any, Tensor | None]:
    """``(x, state or None, lengths or None)`` for a cell or an encoder, from the case's seed."""
    gen = torch.Generator().manual_seed(case.seed + 1)
    x = torch.randn(case.batch, case.time, case.inp, generator=gen, dtype=case.dtype)
    state = None
    if case.state:
        zeros = module.initial_state(case.batch, device=x.device, dtype=x.dtype)
        state = random_like(zeros, gen)
    lengths = None if case.lengths is None else torch.tensor(case.lengths)
    return x, state, lengths


def random_like(state: Any, gen: torch.Generator) -> Any:
    if isinstance(state, list | tuple):
        return type(state)(random_like(s, gen) for s in state)
    return torch.randn(state.shape, generator=gen, dtype=state.dtype)


def clone(state: Any) -> Any:
    if isinstance(state, list | tuple):
        return type(state)(clone(s) for s in state)
    return None if state is None else state.detach().clone()


def flat(state: Any) -> list[Tensor]:
    if state is None:
        return []
    if isinstance(state, list | tuple):
        return [t for s in state for t in flat(s)]
    return [state]


@contextmanager
def checked_run(case: Case) -> Iterator[Allocations]:
    """Kernels on or off and their block length as drawn, NaN in every fresh buffer; a kernel that ran
    must have had its buffers NaN-filled."""
    chunk, scaffold.CHUNK = scaffold.CHUNK, case.chunk
    try:
        with use_kernels(case.kernels), nan_filled_allocations() as seen:
            yield seen
    finally:
        scaffold.CHUNK = chunk
    if seen.kernels:
        assert seen.total > 0, "a kernel ran but no allocation of it was NaN-filled: the patch missed it"


def run(case: Case, fn: Callable[[], _R]) -> _R:
    with checked_run(case):
        return fn()


def alone(state: Any, b: int) -> Any:
    """Row ``b`` of a (nested) state, kept 2-d."""
    if state is None:
        return None
    if isinstance(state, list | tuple):
        return type(state)(alone(s, b) for s in state)
    return state[b : b + 1]


# -- the bug this suite was written for ------------------------------------------------------------------


def test_gru3_on_one_step_of_one_sequence_leaves_its_bias_unchanged() -> None:
    """B = T = 1 made the expanded gate bias contiguous already, and the kernel's sigmoid_ wrote into it."""
    torch.manual_seed(0)
    cell = build_cell("gru3", 5, 7)
    before = snapshot(cell)
    x = torch.randn(1, 1, 5)
    with use_kernels(False):
        want, _ = cell(x)
    for _ in range(3):
        with use_kernels(True):
            got, _ = cell(x)
        assert_unchanged(cell, before, "gru3 on one step of one sequence")
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "loop"])
@pytest.mark.parametrize("name", CELLS)
def test_parameters_unchanged_at_batch_1_time_1(name: str, kernels: bool) -> None:
    """The smallest shapes (B = T = 1, H = 1 and H > 1), both dtypes and modes: forward, step, gates."""
    for hid in (1, 7):
        for dtype in DTYPES:
            torch.manual_seed(0)
            cell = build_cell(name, 5, hid).to(dtype)
            before = snapshot(cell)
            for train in (True, False):
                cell.train(train)
                x = torch.randn(1, 1, 5, dtype=dtype)
                state = random_like(cell.initial_state(1, device=x.device, dtype=dtype), torch.Generator())
                kept = clone(state)
                with use_kernels(kernels), nan_filled_allocations():
                    out, _ = cell(x)
                    cell(x, state, torch.tensor([1]))
                    cell.step(x[:, 0], state)
                    if cell.gate_names:
                        cell.forward_with_gates(x, state)
                    out.sum().backward()
                assert_unchanged(cell, before, f"{name} (H={hid}, {dtype}, train={train})")
                for s, k in zip(flat(state), flat(kept), strict=True):
                    assert torch.equal(s, k), "the caller's state was written"


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "loop"])
@pytest.mark.parametrize("name", CELLS)
def test_encoder_parameters_unchanged_at_batch_1_time_1(name: str, kernels: bool) -> None:
    """As above for a stacked bidirectional encoder (its second layer sees B = T = 1 too)."""
    for hid in (1, 7):
        torch.manual_seed(0)
        encoder = RecurrentEncoder(name, 5, hid, num_layers=2, bidirectional=True, dropout=0.5)
        before = snapshot(encoder)
        for train in (True, False):
            encoder.train(train)
            x = torch.randn(1, 1, 5)
            with use_kernels(kernels), nan_filled_allocations():
                out, _ = encoder(x, lengths=torch.tensor([1]))
                out.sum().backward()
            assert_unchanged(encoder, before, f"encoder of {name} (H={hid}, train={train})")


@pytest.mark.parametrize("name", WIRED)
def test_nan_fill_reaches_every_kernel(name: str) -> None:
    """The allocation patch is really hit: each wired cell's kernel allocates, and its results stay finite."""
    torch.manual_seed(0)
    cell = build_cell(name, 3, 4).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    with nan_filled_allocations() as seen:
        out, state = cell(x, lengths=torch.tensor([5, 2]))
        (out.sum() + sum(p.sum() for p in flat(state))).backward()
    assert seen.kernels, f"{name} ran no kernel"
    assert any(module.startswith("zoo.cells.kernels.") for module in seen.by_module)
    assert torch.isfinite(out).all() and x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in cell.parameters())


def test_nan_fill_reaches_the_parallel_scan() -> None:
    torch.manual_seed(0)
    cell = build_cell("min_gru", 3, 4, mode="scan").double()
    x = torch.randn(2, 20, 3, dtype=torch.float64, requires_grad=True)
    with nan_filled_allocations() as seen:
        out, _ = cell(x)
        out.sum().backward()
    assert seen.by_module.get("zoo.cells.kernels.linear", 0) > 0
    loop = build_cell("min_gru", 3, 4, mode="loop").double()
    loop.load_state_dict(cell.state_dict())
    with use_kernels(False):
        want, _ = loop(x)
    torch.testing.assert_close(out, want, **TOL[torch.float64])


# -- the properties, for a cell or an encoder ------------------------------------------------------------


def has_gates(module: nn.Module) -> bool:
    first = module.layers[0] if isinstance(module, RecurrentEncoder) else module
    return bool(first.gate_names)


def can_step(module: nn.Module) -> bool:
    return not (isinstance(module, RecurrentEncoder) and module.bidirectional)


def prop_unchanged(module: nn.Module, case: Case) -> None:
    """(a) No forward, step or gate inspection writes into the parameters, the input or the given state."""
    before = snapshot(module)
    x, state, lengths = make_inputs(module, case)
    kept_x, kept_state = x.clone(), clone(state)
    with checked_run(case):
        module(x, state, lengths)
        if can_step(module):
            module.step(x[:, 0], state)
        if has_gates(module):
            module.forward_with_gates(x, state, lengths)
    assert_unchanged(module, before, "forward/step")
    assert torch.equal(x, kept_x), "the input was written"
    for s, k in zip(flat(state), flat(kept_state), strict=True):
        assert torch.equal(s, k), "the caller's state was written"


def prop_two_calls(module: nn.Module, case: Case) -> None:
    """(b) The same call twice gives the same result, bit for bit."""
    x, state, lengths = make_inputs(module, case)
    out1, s1 = run(case, lambda: module(x, state, lengths))
    out2, s2 = run(case, lambda: module(x, state, lengths))
    assert torch.equal(out1, out2)
    for a, b in zip(flat(s1), flat(s2), strict=True):
        assert torch.equal(a, b)


def prop_steps(module: nn.Module, case: Case) -> None:
    """(c) A loop of ``step`` equals ``forward``, every output and the final state."""
    x, state, _ = make_inputs(module, case)
    out, final = run(case, lambda: module(x, state))
    s = state
    for t in range(case.time):
        h, s = run(case, lambda t=t, s=s: module.step(x[:, t], s))
        torch.testing.assert_close(h, out[:, t], **case.tol)
    assert_all_close(flat(s), flat(final), **case.tol)


def prop_padding(module: nn.Module, case: Case) -> None:
    """(d) A padded batch equals each sequence alone; outputs on padding are exactly zero."""
    x, state, lengths = make_inputs(module, case)
    out, final = run(case, lambda: module(x, state, lengths))
    for b, n in enumerate(case.lengths or ()):
        o, s = run(case, lambda b=b, n=n: module(x[b : b + 1, :n], alone(state, b)))
        torch.testing.assert_close(out[b : b + 1, :n], o, **case.tol)
        assert torch.all(out[b, n:] == 0), "outputs on padding must be zero"
        assert_all_close(flat(alone(final, b)), flat(s), **case.tol)


def prop_continuation(module: nn.Module, case: Case, k: int) -> None:
    """(e) ``forward(x[:, :k])`` then ``forward(x[:, k:], state)`` equals ``forward(x)``."""
    x, state, _ = make_inputs(module, case)
    full, full_state = run(case, lambda: module(x, state))
    first, s = run(case, lambda: module(x[:, :k], state))
    second, s2 = run(case, lambda: module(x[:, k:], s))
    torch.testing.assert_close(torch.cat([first, second], 1), full, **case.tol)
    assert_all_close(flat(s2), flat(full_state), **case.tol)


def prop_kernels(module: nn.Module, case: Case) -> None:
    """(f) The kernels equal the autograd loop: outputs, final state, gradients of input, state, weights."""
    x, state, lengths = make_inputs(module, case)
    got = run(case, lambda: forward_and_grads(module, x, state, lengths, case.seed))
    with use_kernels(False):
        want = forward_and_grads(module, x, state, lengths, case.seed)
    assert_all_close(got, want, **case.tol)


def with_grad(state: Any) -> tuple[Any, list[Tensor]]:
    """A copy of a (nested) state whose tensors require grad, and those tensors."""
    if state is None:
        return None, []
    if isinstance(state, list | tuple):
        pairs = [with_grad(s) for s in state]
        return type(state)(p[0] for p in pairs), [t for p in pairs for t in p[1]]
    leaf = state.detach().clone().requires_grad_(True)
    return leaf, [leaf]


def forward_and_grads(
    module: nn.Module, x: Tensor, state: Any, lengths: Tensor | None, seed: int
) -> list[Any]:
    """Outputs, final state and the gradients of a random linear loss w.r.t. x, state and parameters."""
    x = x.detach().requires_grad_(True)
    state, leaves = with_grad(state)
    out, final = module(x, state, lengths)
    gen = torch.Generator().manual_seed(seed)
    finals = flat(final)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for f in finals:
        loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=f.dtype)).sum()
    wrt = [x, *leaves, *module.parameters()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return [out.detach(), *(f.detach() for f in finals), *grads]


def assert_all_close(got: list[Any], want: list[Any], **tol: float) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g is None or w is None:
            assert g is None and w is None, f"item {i}: a gradient on one path only"
            continue
        torch.testing.assert_close(g, w, **tol, msg=lambda m, i=i: f"item {i}: {m}")


# -- every registered cell ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CELLS)
@given(case=cases())
def test_cell_leaves_parameters_and_inputs_unchanged(name: str, case: Case) -> None:
    prop_unchanged(make_cell(name, case), case)


@pytest.mark.parametrize("name", CELLS)
@given(case=cases())
def test_cell_two_calls_agree(name: str, case: Case) -> None:
    prop_two_calls(make_cell(name, case), case)


@pytest.mark.parametrize("name", CELLS)
@given(case=cases(lengths=False))
def test_cell_loop_of_steps_equals_forward(name: str, case: Case) -> None:
    prop_steps(make_cell(name, case), case)


@pytest.mark.parametrize("name", CELLS)
@given(case=cases(lengths=True))
def test_cell_padded_batch_equals_each_sequence_alone(name: str, case: Case) -> None:
    # eval: in training a batch-normed cell (li_gru norm="batch") sees its whole batch, by design
    prop_padding(make_cell(name, case).eval(), case)


@pytest.mark.parametrize("name", CELLS)
@given(case=cases(min_time=2, lengths=False), data=st.data())
def test_cell_state_continues_exactly(name: str, case: Case, data: st.DataObject) -> None:
    prop_continuation(make_cell(name, case), case, data.draw(st.integers(1, case.time - 1), label="k"))


@pytest.mark.parametrize("name", CELLS)
@given(case=cases(dtype=torch.float64, kernels=True))
def test_cell_kernels_equal_the_autograd_loop_in_float64(name: str, case: Case) -> None:
    prop_kernels(make_cell(name, case), case)


# -- the encoder over every cell: stacked, bidirectional, dropout -------------------------------------------


@dataclass(frozen=True)
class Layout:
    num_layers: int
    bidirectional: bool
    dropout: float


def layouts(bidirectional: bool | None = None) -> st.SearchStrategy[Layout]:
    return st.builds(
        Layout,
        num_layers=st.integers(1, 2),
        bidirectional=st.booleans() if bidirectional is None else st.just(bidirectional),
        dropout=st.sampled_from([0.0, 0.5]),
    )


def make_encoder(name: str, case: Case, layout: Layout, *, random: bool = False) -> RecurrentEncoder:
    """The encoder in the case's mode; dropout only in eval mode unless ``random`` (results compared)."""
    torch.manual_seed(case.seed)
    dropout = layout.dropout if random or not case.train else 0.0
    encoder = RecurrentEncoder(name, case.inp, case.hid, layout.num_layers, layout.bidirectional, dropout)
    return encoder.to(case.dtype).train(case.train)


encoder_settings = settings(max_examples=ENCODER_EXAMPLES)


@pytest.mark.parametrize("name", CELLS)
@encoder_settings
@given(case=cases(), layout=layouts())
def test_encoder_leaves_parameters_and_inputs_unchanged(name: str, case: Case, layout: Layout) -> None:
    prop_unchanged(make_encoder(name, case, layout, random=True), case)


@pytest.mark.parametrize("name", CELLS)
@encoder_settings
@given(case=cases(), layout=layouts())
def test_encoder_two_calls_agree(name: str, case: Case, layout: Layout) -> None:
    prop_two_calls(make_encoder(name, case, layout), case)


@pytest.mark.parametrize("name", CELLS)
@encoder_settings
@given(case=cases(lengths=False), layout=layouts(bidirectional=False))
def test_encoder_loop_of_steps_equals_forward(name: str, case: Case, layout: Layout) -> None:
    prop_steps(make_encoder(name, case, layout), case)


@pytest.mark.parametrize("name", CELLS)
@encoder_settings
@given(case=cases(lengths=True), layout=layouts())
def test_encoder_padded_batch_equals_each_sequence_alone(name: str, case: Case, layout: Layout) -> None:
    prop_padding(make_encoder(name, case, layout).eval(), case)


@pytest.mark.parametrize("name", CELLS)
@encoder_settings
@given(case=cases(min_time=2, lengths=False), layout=layouts(bidirectional=False), data=st.data())
def test_encoder_state_continues_exactly(name: str, case: Case, layout: Layout, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, case.time - 1), label="k")
    prop_continuation(make_encoder(name, case, layout), case, k)


@pytest.mark.parametrize("name", CELLS)
@encoder_settings
@given(case=cases(dtype=torch.float64, kernels=True), layout=layouts())
def test_encoder_kernels_equal_the_autograd_loop_in_float64(name: str, case: Case, layout: Layout) -> None:
    prop_kernels(make_encoder(name, case, layout), case)
