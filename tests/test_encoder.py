"""RecurrentEncoder: stacking, bidirectional lengths, dropout, step, gates, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import zoo.encoder
from zoo import EncoderConfig, RecurrentEncoder, build_encoder, list_cells
from zoo.encoder import reverse_padded
from zoo.errors import ZooConfigError


def test_reverse_padded_reverses_within_length_only() -> None:
    x = torch.arange(8.0).view(2, 4, 1)
    got = reverse_padded(x, torch.tensor([4, 2]))
    assert got[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]


def test_stacking_matches_torch_multilayer_gru() -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder("gru", 4, 6, num_layers=2).double()
    twin = nn.GRU(4, 6, num_layers=2, batch_first=True).double()
    with torch.no_grad():
        for layer in range(2):
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(twin, f"{kind}_l{layer}").copy_(getattr(enc.layers[layer].rnn, f"{kind}_l0"))
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    out, state = enc(x)
    want, hn = twin(x)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(torch.stack(state), hn)


def test_bidirectional_matches_torch_and_respects_lengths() -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder("lstm", 3, 4, bidirectional=True).double()
    twin = nn.LSTM(3, 4, batch_first=True, bidirectional=True).double()
    with torch.no_grad():
        for d, suffix in enumerate(("", "_reverse")):
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(twin, f"{kind}_l0{suffix}").copy_(getattr(enc.layers[d].rnn, f"{kind}_l0"))
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 2])
    out, state = enc(x, lengths=lengths)
    assert out.shape == (3, 6, 8) and enc.output_size == 8
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    want, (hn, _) = twin(packed)
    want, _ = nn.utils.rnn.pad_packed_sequence(want, batch_first=True, total_length=6)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(state[1][0], hn[1])
    for b, n in enumerate(lengths.tolist()):
        alone, _ = enc(x[b : b + 1, :n])
        torch.testing.assert_close(out[b : b + 1, :n], alone)


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    enc = RecurrentEncoder("gru", 3, 16, num_layers=2, dropout=0.5)
    x = torch.randn(2, 5, 3)
    enc.eval()
    a, _ = enc(x)
    b, _ = enc(x)
    assert torch.equal(a, b)
    enc.train()
    c, _ = enc(x)
    d, _ = enc(x)
    assert not torch.equal(c, d)


def test_step_refuses_bidirectional() -> None:
    enc = RecurrentEncoder("gru", 3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        enc.step(torch.randn(2, 3))


def test_gates_per_layer_and_direction() -> None:
    enc = RecurrentEncoder("gru", 3, 4, num_layers=2, bidirectional=True)
    _, _, gates = enc.forward_with_gates(torch.randn(2, 5, 3), lengths=[5, 3])
    assert len(gates) == 4 and gates[1]["update"].shape == (2, 5, 4)
    assert torch.all(gates[1]["update"][1, 3:] == 0)
    with pytest.raises(NotImplementedError):
        RecurrentEncoder("rnn_tanh", 3, 4).forward_with_gates(torch.randn(2, 5, 3))


def test_config_and_errors() -> None:
    enc = build_encoder({"cell": "lstm", "hidden_size": 8, "bidirectional": True}, input_size=3)
    assert isinstance(enc, RecurrentEncoder) and enc.output_size == 16
    assert EncoderConfig(cell="gru", hidden_size=5).build(2).output_size == 5
    with pytest.raises(ValueError, match="unknown encoder key"):
        build_encoder({"cel": "gru"}, 3)
    with pytest.raises(ValueError, match="Valid cells"):
        RecurrentEncoder("grux", 3, 4)
    with pytest.raises(ValueError, match="does not take option"):
        RecurrentEncoder("gru", 3, 4, cell_options={"bogus": 1})
    with pytest.raises(ValueError, match="list of 2 layer states"):
        RecurrentEncoder("gru", 3, 4, num_layers=2)(torch.randn(1, 2, 3), state=[torch.zeros(1, 4)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, r"hidden_size must be an integer >= 1 \(units of each layer's state\), got 0"),
        ({"hidden_size": -5}, r"hidden_size must be an integer >= 1 .*, got -5"),
        ({"input_size": 0}, r"input_size must be an integer >= 1 \(features per input step\), got 0"),
        ({"num_layers": 0}, r"num_layers must be an integer >= 1 \(stacked layers\), got 0"),
        ({"num_layers": True}, r"num_layers must be an integer >= 1 .*, got True"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\) .*, got 1.0"),
        ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\) .*, got -0.1"),
        ({"dropout": float("nan")}, r"dropout must be a number in \[0, 1\) .*, got nan"),
    ],
)
def test_invalid_sizes_are_a_config_error_before_any_tensor(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], message: str
) -> None:
    built: list[nn.Module] = []
    build_cell = zoo.encoder.build_cell

    def recording_build_cell(*args: Any, **kw: Any) -> nn.Module:
        built.append(build_cell(*args, **kw))
        return built[-1]

    monkeypatch.setattr(zoo.encoder, "build_cell", recording_build_cell)
    args = {"cell": "gru", "input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(ZooConfigError, match=message):
        RecurrentEncoder(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):  # a ZooConfigError is a ValueError
        EncoderConfig(**{k: v for k, v in args.items() if k != "input_size"}).build(args["input_size"])  # type: ignore[arg-type]
    assert built == [], "a layer was built before the check failed"


@pytest.mark.parametrize("name", list_cells())
def test_uniform_init_bounds_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    scale = 0.05
    enc = RecurrentEncoder(name, 3, 6, num_layers=2, bidirectional=True, init="uniform", init_scale=scale)
    params = list(enc.parameters())
    assert params
    for p in params:
        assert p.abs().max() <= scale, name
        if p.numel() > 1:
            assert p.std() > 0, name  # drawn, not filled with one value
    # most parameters of a default-initialised cell fall outside this narrow band
    default = RecurrentEncoder(name, 3, 6, num_layers=2, bidirectional=True)
    assert any(p.abs().max() > scale for p in default.parameters()), name


def test_uniform_init_errors() -> None:
    with pytest.raises(ValueError, match="init must be one of"):
        RecurrentEncoder("gru", 3, 4, init="xavier")
    with pytest.raises(ValueError, match="init_scale must be a positive number"):
        RecurrentEncoder("gru", 3, 4, init="uniform", init_scale=0.0)


def test_language_model_uniform_init_covers_embedding_and_decoder() -> None:
    from zoo.tasks import LanguageModel

    torch.manual_seed(0)
    encoder = {"cell": "lstm", "hidden_size": 8, "num_layers": 2, "init": "uniform", "init_scale": 0.1}
    model = LanguageModel(encoder, vocab_size=50, embedding_dim=8, tie_weights=False)
    for name, p in model.named_parameters():
        assert p.abs().max() <= 0.1, name
    assert model.hparams["encoder"]["init"] == "uniform"
    plain = LanguageModel({"cell": "lstm", "hidden_size": 8}, vocab_size=50, embedding_dim=8)
    assert plain.embedding.weight.abs().max() > 0.1  # torch's N(0, 1) embedding by default
