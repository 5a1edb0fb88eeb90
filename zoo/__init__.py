"""rnn-zoo: recurrent sequence models (GRU, LSTM, RNN and their variants) for PyTorch Lightning."""

from typing import TYPE_CHECKING, Any

from zoo.cells import CellSpec, RecurrentLayer, build_cell, get_cell_spec, list_cells, register_cell
from zoo.encoder import EncoderConfig, RecurrentEncoder, build_encoder
from zoo.tasks import Forecaster, LanguageModel, SequenceClassifier, TokenTagger, gate_activations
from zoo.tracking.load import load_model

if TYPE_CHECKING:
    from zoo.tracking.predict import Predictor

__version__ = "0.1.0"

__all__ = [
    "CellSpec",
    "EncoderConfig",
    "Forecaster",
    "LanguageModel",
    "Predictor",
    "RecurrentEncoder",
    "RecurrentLayer",
    "SequenceClassifier",
    "TokenTagger",
    "__version__",
    "build_cell",
    "build_encoder",
    "gate_activations",
    "get_cell_spec",
    "list_cells",
    "load_model",
    "register_cell",
]


def __getattr__(name: str) -> Any:
    # the predictor pulls in pandas and datasets: loaded on first use, so `import zoo` stays light
    if name == "Predictor":
        from zoo.tracking.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
