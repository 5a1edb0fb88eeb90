"""TokenTagger: bidirectional default, padding ignored, predictions cut to length."""

from __future__ import annotations

import pytest
import torch

from tests.tasks.tiny import VOCAB, loader, tiny_batch, tiny_model, trainer
from zoo import EncoderConfig, TokenTagger

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to")


def test_default_encoder_is_bidirectional() -> None:
    model = TokenTagger(vocab_size=VOCAB, num_tags=3, embedding_dim=8)
    assert model.encoder.bidirectional and model.hparams["encoder"]["bidirectional"] is True
    assert model.head.in_features == 2 * EncoderConfig().hidden_size


def test_padding_is_ignored_in_loss_and_metrics() -> None:
    torch.manual_seed(0)
    model = tiny_model("tagger").eval()
    batch = tiny_batch("tagger")
    padded = batch["tags"] == -100
    other = {**batch, "input_ids": batch["input_ids"].masked_fill(padded, 7)}  # different padding ids
    with torch.no_grad():
        loss = model.training_step(batch, 0)
        torch.testing.assert_close(model.training_step(other, 0), loss)
    logits = model(batch["input_ids"], batch["lengths"])
    real = ~padded
    want_acc = (logits.argmax(-1)[real] == batch["tags"][real]).float().mean()
    result = trainer().validate(model, loader([batch]), verbose=False)[0]
    assert result["val_acc"] == pytest.approx(float(want_acc), abs=1e-6)
    assert result["val_loss"] == pytest.approx(float(loss), rel=1e-5)


def test_predict_step_cuts_tags_to_length() -> None:
    torch.manual_seed(0)
    model = tiny_model("tagger").eval()
    batch = tiny_batch("tagger")
    tags = model.predict_step({"input_ids": batch["input_ids"], "lengths": batch["lengths"]})["tags"]
    assert [len(t) for t in tags] == batch["lengths"].tolist()
    assert all(0 <= t < 4 for row in tags for t in row)


def test_bad_inputs_have_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_tags must be at least 2"):
        TokenTagger(vocab_size=VOCAB, num_tags=1)
    model = tiny_model("tagger")
    batch = tiny_batch("tagger")
    with pytest.raises(ValueError, match="vocab_size"):
        model.training_step({**batch, "input_ids": batch["input_ids"] + VOCAB}, 0)
    with pytest.raises(ValueError, match="tags must have the shape"):
        model.training_step({**batch, "tags": batch["tags"][:, :3]}, 0)
