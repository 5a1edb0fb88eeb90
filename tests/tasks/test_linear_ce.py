"""linear_cross_entropy equals F.cross_entropy over F.linear, values and gradients, in float64."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tests.tasks.tiny import VOCAB, tiny_model
from zoo.tasks._linear_ce import linear_cross_entropy


def _inputs(rows: int, features: int, classes: int, bias: bool) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(rows * 1000 + classes)
    x = torch.randn(rows, features, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(classes, features, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(classes, dtype=torch.float64, generator=g).requires_grad_() if bias else None
    return [x, w, b]


def _loss_and_grads(fn, x, w, b, targets, **kwargs):  # type: ignore[no-untyped-def]
    loss = fn(x, w, b, targets, **kwargs)
    params = [p for p in (x, w, b) if p is not None]
    return loss.detach(), torch.autograd.grad(loss * 1.7, params)  # a grad_out that is not 1


def _reference(x, w, b, targets, ignore_index=-100, reduction="sum"):  # type: ignore[no-untyped-def]
    return F.cross_entropy(F.linear(x, w, b), targets, ignore_index=ignore_index, reduction=reduction)


# float64 rows are padded to multiples of 8 columns: 16 needs none, 7, 19 and 101 do
@pytest.mark.parametrize("classes", [7, 16, 19, 101])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_equals_cross_entropy_of_linear_with_gradients(classes: int, bias: bool, reduction: str) -> None:
    x, w, b = _inputs(23, 5, classes, bias)
    targets = torch.randint(0, classes, (23,), generator=torch.Generator().manual_seed(classes))
    targets[[2, 9, 10]] = -100
    got, got_grads = _loss_and_grads(linear_cross_entropy, x, w, b, targets, reduction=reduction)
    want, want_grads = _loss_and_grads(_reference, x, w, b, targets, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, r in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    assert got_grads[0][[2, 9, 10]].abs().max() == 0, "ignored rows get no gradient"


def test_float32_matches_and_custom_ignore_index() -> None:
    x, w, b = (t.float().detach().requires_grad_() for t in _inputs(40, 8, 10002, True) if t is not None)
    targets = torch.randint(0, 10002, (40,), generator=torch.Generator().manual_seed(1))
    targets[5] = 3  # ignored below
    got, got_grads = _loss_and_grads(linear_cross_entropy, x, w, b, targets, ignore_index=3)
    want, want_grads = _loss_and_grads(_reference, x, w, b, targets, ignore_index=3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    for g, r in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_targets_with_underflowing_probability_keep_an_exact_finite_loss(dtype: torch.dtype) -> None:
    x, w, b = (t.to(dtype).detach() for t in _inputs(12, 4, 30, True) if t is not None)
    w = w * 400  # logits in the thousands: most targets' softmax is 0 in float32 and float64
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    targets = torch.arange(12)
    got, got_grads = _loss_and_grads(linear_cross_entropy, x, w, b, targets)
    want, want_grads = _loss_and_grads(_reference, x.double(), w.double(), b.double(), targets)
    assert torch.isfinite(got) and got > 1000
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    for g, r in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g.double(), r, rtol=1e-6, atol=1e-6)


def test_gradients_only_for_inputs_that_need_them() -> None:
    x, w, b = _inputs(6, 3, 9, True)
    assert w is not None and b is not None
    w.requires_grad_(False)
    targets = torch.arange(6)
    (gx,) = torch.autograd.grad(linear_cross_entropy(x, w, b, targets), [x])
    (rx,) = torch.autograd.grad(_reference(x, w, b, targets), [x])
    torch.testing.assert_close(gx, rx)


# The weight and bias gradients share one matmul (x with a column of ones, padded to 64 bytes): 7 features
# fill 8 float64 columns exactly, 5 and 12 need padding; each subset of gradients takes its own branch.
@pytest.mark.parametrize("features", [5, 7, 12])
@pytest.mark.parametrize(
    "wanted", [(True, True, True), (False, True, True), (True, False, True), (True, True, False)]
)
def test_each_subset_of_gradients_equals_cross_entropy(
    features: int, wanted: tuple[bool, bool, bool]
) -> None:
    x, w, b = _inputs(17, features, 11, True)
    assert w is not None and b is not None
    for tensor, flag in zip((x, w, b), wanted, strict=True):
        tensor.requires_grad_(flag)
    targets = torch.randint(0, 11, (17,), generator=torch.Generator().manual_seed(features))
    targets[4] = -100
    params = [t for t, flag in zip((x, w, b), wanted, strict=True) if flag]
    got = torch.autograd.grad(linear_cross_entropy(x, w, b, targets) * 0.3, params)
    want = torch.autograd.grad(_reference(x, w, b, targets, reduction="sum") * 0.3, params)
    for g, r in zip(got, want, strict=True):
        assert g.shape == r.shape and g.is_contiguous()
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_bad_input_is_named() -> None:
    x, w, b = _inputs(4, 3, 9, True)
    with pytest.raises(ValueError, match="target 9 is out of range for 9 classes"):
        linear_cross_entropy(x, w, b, torch.tensor([0, 9, 1, 2]))
    with pytest.raises(ValueError, match="flatten batch and time"):
        linear_cross_entropy(x.unsqueeze(0), w, b, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(x, w, b, torch.zeros(4, dtype=torch.long), reduction="none")


def test_second_backward_fails_instead_of_reading_a_spent_buffer() -> None:
    x, w, b = _inputs(4, 3, 9, True)
    loss = linear_cross_entropy(x, w, b, torch.tensor([0, 1, 2, 3]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_language_model_loss_equals_cross_entropy_of_its_logits() -> None:
    torch.manual_seed(0)
    model = tiny_model("language_model").double().train()
    input_ids = torch.randint(0, VOCAB, (3, 7))
    targets = torch.randint(0, VOCAB, (3, 7))
    targets[1, 4:] = -100
    out, _ = model.encoder(model.encoder_inputs(input_ids))
    got = model.nll_sum(out, targets)
    (got_grad,) = torch.autograd.grad(got, [model.embedding.weight], retain_graph=True)
    want = F.cross_entropy(model.logits(out).reshape(-1, VOCAB), targets.reshape(-1), reduction="sum")
    (want_grad,) = torch.autograd.grad(want, [model.embedding.weight])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-12)


def test_autocast_takes_the_plain_path() -> None:
    x, w, b = (t.float().detach() for t in _inputs(8, 16, 40, True) if t is not None)
    targets = torch.arange(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(x, w, b, targets)
        want = _reference(x, w, b, targets)
    assert torch.equal(got, want)  # bfloat16 logits: the padded float path would differ in the last bits
