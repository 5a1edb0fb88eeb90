"""LanguageModel: generation by steps, weight tying, truncated BPTT, token-weighted perplexity."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from tests.tasks.tiny import VOCAB, loader, tiny_batch, tiny_model, trainer
from zoo import EncoderConfig, LanguageModel
from zoo.cells import detach_state

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to")


def _count_calls(module: nn.Module, name: str) -> list[int]:
    """Wrap ``module.<name>`` so that each call appends the input's time length (or 1) to a list."""
    calls: list[int] = []
    original = getattr(module, name)

    def wrapped(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(x.size(1) if x.dim() == 3 else 1)
        return original(x, *args, **kwargs)

    setattr(module, name, wrapped)
    return calls


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_generate_runs_the_prompt_once_then_one_step_per_token(cell: str) -> None:
    torch.manual_seed(0)
    model = tiny_model("language_model", cell)
    forwards = _count_calls(model.encoder, "forward")
    steps = _count_calls(model.encoder, "step")
    new = model.generate([1, 2, 3, 4, 5], max_new_tokens=50, temperature=1.0, seed=0)
    assert len(new) == 50 and all(0 <= t < VOCAB for t in new)
    assert forwards == [5], "the prompt runs through forward exactly once, and nothing else does"
    assert len(steps) == 49, "one step per generated token (the last token needs no step)"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_greedy_generation_equals_rerunning_the_prefix(cell: str) -> None:
    torch.manual_seed(0)
    enc = EncoderConfig(cell=cell, hidden_size=8, num_layers=2)
    model = LanguageModel(enc, VOCAB, embedding_dim=6, dropout=0.3).eval()
    got = model.generate(torch.tensor([3, 1, 4]), max_new_tokens=12, temperature=0)
    seq = [3, 1, 4]
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(torch.tensor([seq]))
            seq.append(int(logits[0, -1].argmax()))
    assert got == seq[3:]


def test_sampling_options() -> None:
    torch.manual_seed(0)
    model = tiny_model("language_model")
    model.train()
    a = model.generate([1, 2], 30, temperature=1.5, seed=7)
    assert a == model.generate([1, 2], 30, temperature=1.5, seed=7)
    assert a != model.generate([1, 2], 30, temperature=1.5, seed=8)
    assert model.training, "generate restores the training mode"
    assert model.generate([1, 2], 20, top_k=1, seed=3) == model.generate([1, 2], 20, temperature=0)
    greedy = model.generate([1, 2], 20, temperature=0)
    stop = greedy[4]
    cut = model.generate([1, 2], 20, temperature=0, eos_id=stop)
    assert cut == greedy[: greedy.index(stop) + 1]
    with pytest.raises(ValueError, match="at least one token"):
        model.generate([], 5)
    with pytest.raises(ValueError, match="vocab_size"):
        model.generate([VOCAB + 3], 5)


def test_weight_tying_with_and_without_projection() -> None:
    enc = EncoderConfig(hidden_size=12)
    tied = LanguageModel(enc, VOCAB, embedding_dim=12)
    assert tied.decoder.weight is tied.embedding.weight and isinstance(tied.projection, nn.Identity)
    projected = LanguageModel(enc, VOCAB, embedding_dim=6)
    assert projected.decoder.weight is projected.embedding.weight
    assert isinstance(projected.projection, nn.Linear) and projected.projection.in_features == 12
    untied = LanguageModel(enc, VOCAB, embedding_dim=6, tie_weights=False)
    assert untied.decoder.weight is not untied.embedding.weight and untied.decoder.in_features == 12
    count = sum(p.numel() for p in tied.parameters())
    assert (
        count
        == sum(p.numel() for p in LanguageModel(enc, VOCAB, embedding_dim=12, tie_weights=False).parameters())
        - VOCAB * 12
    )
    logits, _ = projected(torch.randint(0, VOCAB, (2, 5)))
    assert logits.shape == (2, 5, VOCAB)


def test_rejects_bidirectional_encoder_and_bad_vocab() -> None:
    with pytest.raises(ValueError, match="unidirectional"):
        LanguageModel(EncoderConfig(bidirectional=True, hidden_size=8), VOCAB)
    model = tiny_model("language_model")
    batch = tiny_batch("language_model")
    batch["input_ids"] = batch["input_ids"].clone()
    batch["input_ids"][0, 0] = VOCAB + 5
    with pytest.raises(ValueError, match=f"token id {VOCAB + 5}.*vocab_size={VOCAB}"):
        model.training_step(batch, 0)


def _window(seed: int, batch: int = 4, reset: bool = False) -> dict[str, Any]:
    out = tiny_batch("language_model", seed)
    return {
        "input_ids": out["input_ids"][:batch],
        "targets": out["targets"][:batch],
        "reset": torch.tensor(reset),
    }


def _loss(model: LanguageModel, batch: dict[str, Any], state: Any) -> torch.Tensor:
    logits, _ = model(batch["input_ids"], state)
    return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch["targets"].reshape(-1))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_truncated_bptt_carries_detached_state(cell: str) -> None:
    torch.manual_seed(0)
    model = tiny_model("language_model", cell)
    first, second, third = _window(1, reset=True), _window(2), _window(3, reset=True)
    loss1 = model.training_step(first, 0)
    _, state1 = model(first["input_ids"])
    loss1.backward()
    carried = model._carried["train"][1]
    flat = [t for s in carried for t in (s if isinstance(s, tuple) else (s,))]
    assert all(t.grad_fn is None and not t.requires_grad for t in flat)

    loss2 = model.training_step(second, 1)
    torch.testing.assert_close(loss2, _loss(model, second, detach_state(state1)))
    assert not torch.allclose(loss2, _loss(model, second, None)), "the carried state matters"
    loss2.backward()  # would fail ("backward through the graph a second time") if batch 1's graph were kept

    torch.testing.assert_close(model.training_step(third, 2), _loss(model, third, None))  # reset=True
    model.training_step(_window(4), 3)
    short = _window(5, batch=2)
    torch.testing.assert_close(model.training_step(short, 4), _loss(model, short, None))  # batch size changed
    model.on_train_epoch_start()
    fresh = _window(6)
    torch.testing.assert_close(model.training_step(fresh, 0), _loss(model, fresh, None))  # new epoch


def test_validation_carries_its_own_state() -> None:
    torch.manual_seed(0)
    model = tiny_model("language_model")
    model.training_step(_window(1, reset=True), 0)
    model.on_validation_epoch_start()
    first = _window(2)
    torch.testing.assert_close(model.validation_step(first, 0), _loss(model, first, None))
    assert "train" in model._carried and "val" in model._carried


def test_perplexity_is_exp_of_token_weighted_mean_loss() -> None:
    torch.manual_seed(0)
    model = tiny_model("language_model")
    batches = []
    for seed, (rows, keep) in enumerate([(6, 8), (2, 1), (4, 3)]):
        b = _window(seed, batch=rows, reset=True)
        targets = b["targets"].clone()
        targets[:, keep:] = -100  # different token counts per batch
        b["targets"] = targets
        batches.append(b)
    result = trainer().validate(model, loader(batches), verbose=False)[0]
    nll, tokens, per_batch_ppl = 0.0, 0, []
    model.eval()
    with torch.no_grad():
        for b in batches:
            logits, _ = model(b["input_ids"])
            s = nn.functional.cross_entropy(
                logits.reshape(-1, VOCAB), b["targets"].reshape(-1), reduction="sum"
            )
            n = int((b["targets"] != -100).sum())
            nll, tokens = nll + float(s), tokens + n
            per_batch_ppl.append(math.exp(float(s) / n))
    assert result["val_ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)
    assert result["val_loss"] == pytest.approx(nll / tokens, rel=1e-5)
    assert abs(result["val_ppl"] - sum(per_batch_ppl) / len(per_batch_ppl)) > 0.05


def test_predict_step_gives_next_token_probs_and_generations() -> None:
    torch.manual_seed(0)
    model = tiny_model("language_model", predict_max_new_tokens=4, predict_temperature=0.0)
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    out = model.predict_step({"input_ids": ids, "lengths": torch.tensor([3, 2])})
    probs = out["next_token_probs"]
    assert probs.shape == (2, VOCAB)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    torch.testing.assert_close(probs[1], model(ids[1:, :2])[0][0, -1].softmax(-1))
    assert out["generated"] == [
        model.generate([1, 2, 3], 4, temperature=0),
        model.generate([4, 5], 4, temperature=0),
    ]
