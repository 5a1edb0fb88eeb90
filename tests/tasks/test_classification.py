"""SequenceClassifier: pooling over real steps, predictions, input checks."""

from __future__ import annotations

import pytest
import torch

from tests.tasks.tiny import VOCAB, tiny_batch, tiny_model
from zoo import EncoderConfig, SequenceClassifier
from zoo.tasks._common import pool

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to")


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padded_batch_gives_what_each_sequence_gives_alone(pooling: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    model = tiny_model("classifier", "lstm", pooling=pooling, bidirectional=bidirectional).eval()
    batch = tiny_batch("classifier")
    logits = model(batch["input_ids"], batch["lengths"])
    for b, n in enumerate(batch["lengths"].tolist()):
        alone = model(batch["input_ids"][b : b + 1, :n])
        torch.testing.assert_close(logits[b : b + 1], alone)


def test_bidirectional_last_joins_forward_end_and_backward_start() -> None:
    torch.manual_seed(0)
    model = tiny_model("classifier", "gru", bidirectional=True).eval()
    batch = tiny_batch("classifier")
    x = model.embedding(batch["input_ids"])
    out, states = model.encoder(x, lengths=batch["lengths"])
    pooled = pool(out, batch["lengths"], "last", bidirectional=True)
    # the final states are the forward direction after the last real step and the backward one after step 0
    torch.testing.assert_close(pooled, torch.cat([states[0], states[1]], dim=-1))


def test_mean_and_max_ignore_padding() -> None:
    out = torch.tensor([[[1.0], [3.0], [100.0]], [[-2.0], [-4.0], [-6.0]]])
    lengths = torch.tensor([2, 3])
    assert pool(out, lengths, "mean", False).flatten().tolist() == [2.0, -4.0]
    assert pool(out, lengths, "max", False).flatten().tolist() == [3.0, -2.0]
    assert pool(out, lengths, "last", False).flatten().tolist() == [3.0, -6.0]


def test_predict_step_returns_labels_and_probabilities() -> None:
    torch.manual_seed(0)
    model = tiny_model("classifier").eval()
    batch = tiny_batch("classifier")
    out = model.predict_step({"input_ids": batch["input_ids"], "lengths": batch["lengths"]})
    assert out["labels"].dtype == torch.long and out["labels"].shape == (6,)
    assert out["probs"].shape == (6, 3)
    torch.testing.assert_close(out["probs"].sum(-1), torch.ones(6))
    assert torch.equal(out["labels"], out["probs"].argmax(-1))


def test_bad_inputs_have_clear_errors() -> None:
    enc = EncoderConfig(hidden_size=8)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        SequenceClassifier(enc, VOCAB, 1)
    with pytest.raises(ValueError, match="pooling must be one of"):
        SequenceClassifier(enc, VOCAB, 2, pooling="first")
    with pytest.raises(ValueError, match="pad_id"):
        SequenceClassifier(enc, VOCAB, 2, pad_id=VOCAB)
    with pytest.raises(ValueError, match="label_names has 3 names"):
        SequenceClassifier(enc, VOCAB, 2, label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="unknown encoder key"):
        SequenceClassifier({"cell": "gru", "hiden_size": 8}, VOCAB, 2)
    model = SequenceClassifier(enc, 10, 3, embedding_dim=8)
    batch = tiny_batch("classifier")  # token ids up to 19
    top = int(batch["input_ids"].max())
    with pytest.raises(
        ValueError, match=f"token id {top} but vocab_size=10: set vocab_size to at least {top + 1}"
    ):
        model.training_step(batch, 0)
    model = SequenceClassifier(enc, VOCAB, 2, embedding_dim=8)
    with pytest.raises(ValueError, match="label 2 but num_classes=2"):
        model.training_step({**batch, "labels": torch.tensor([0, 1, 2, 0, 1, 0])}, 0)


def test_custom_module_encoder_is_left_out_of_hparams() -> None:
    from zoo import RecurrentEncoder

    enc = RecurrentEncoder("gru", 8, 8)
    model = SequenceClassifier(enc, VOCAB, 2, embedding_dim=8)
    assert model.encoder is enc and "encoder" not in model.hparams
