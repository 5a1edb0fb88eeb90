"""rnn-zoo: recurrent sequence models (GRU, LSTM, RNN and their variants) for PyTorch Lightning."""

from zoo.cells import CellSpec, RecurrentLayer, build_cell, get_cell_spec, list_cells, register_cell
from zoo.encoder import EncoderConfig, RecurrentEncoder, build_encoder
from zoo.tracking.load import load_model

__version__ = "0.1.0"

__all__ = [
    "CellSpec",
    "EncoderConfig",
    "RecurrentEncoder",
    "RecurrentLayer",
    "__version__",
    "build_cell",
    "build_encoder",
    "get_cell_spec",
    "list_cells",
    "load_model",
    "register_cell",
]
