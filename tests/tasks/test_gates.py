"""gate_activations: per-token update and reset gates of a trained model, as arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.tasks.tiny import tiny_batch, tiny_model
from zoo import gate_activations

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to")


def _train(model: torch.nn.Module, task: str, steps: int = 20) -> None:
    batch = tiny_batch(task)
    opt = model.configure_optimizers()
    for _ in range(steps):
        loss = model.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_gru_gates_of_a_trained_classifier_match_the_equations() -> None:
    torch.manual_seed(0)
    model = tiny_model("classifier", "gru")
    _train(model, "classifier")
    ids = [3, 1, 4, 1, 5, 9, 2]
    gates = gate_activations(model, ids)
    assert model.training, "the training mode is restored"
    assert len(gates) == 1 and set(gates[0]) == {"update", "reset"}
    z, r = gates[0]["update"], gates[0]["reset"]
    assert isinstance(z, np.ndarray) and z.shape == (7, 8) and r.shape == (7, 8)
    assert ((z > 0) & (z < 1)).all() and ((r > 0) & (r < 1)).all()
    # recompute the gates from torch.nn.GRU's weights (rows r, z, n) and the encoder's own outputs
    rnn = model.encoder.layers[0].rnn
    with torch.no_grad():
        x = model.embedding(torch.tensor([ids]))[0]
        h, _ = model.encoder(x.unsqueeze(0))
        prev = torch.cat([torch.zeros(1, 8), h[0, :-1]])
        gi = x @ rnn.weight_ih_l0.T + rnn.bias_ih_l0
        gh = prev @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        want_r = torch.sigmoid(gi[:, :8] + gh[:, :8])
        want_z = torch.sigmoid(gi[:, 8:16] + gh[:, 8:16])
    np.testing.assert_allclose(z, want_z.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r, want_r.numpy(), rtol=1e-5, atol=1e-6)


def test_one_dict_per_layer_and_direction_for_every_task_input() -> None:
    torch.manual_seed(0)
    tagger = tiny_model("tagger", "gru")  # bidirectional
    _train(tagger, "tagger", steps=5)
    gates = gate_activations(tagger, torch.tensor([[2, 7, 1, 8]]))
    assert len(gates) == 2 and all(g["update"].shape == (4, 8) for g in gates)
    forecaster = tiny_model("forecaster", "gru")
    assert gate_activations(forecaster, torch.randn(5, 2))[0]["reset"].shape == (5, 8)
    lm = tiny_model("language_model", "lstm")
    assert set(gate_activations(lm, [1, 2, 3])[0]) == {"input", "forget", "output"}


def test_cells_without_gates_and_bad_shapes_fail_clearly() -> None:
    model = tiny_model("classifier", "rnn_tanh")
    with pytest.raises(ValueError, match=r"has no gates.*one of \[.*'gru'"):
        gate_activations(model, [1, 2, 3])
    with pytest.raises(ValueError, match="one sequence"):
        gate_activations(tiny_model("classifier", "gru"), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="zoo task model"):
        gate_activations(torch.nn.Linear(2, 2), [1])
