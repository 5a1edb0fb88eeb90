"""Recurrent cells behind one contract (:mod:`zoo.cells.base`) and one registry (:mod:`zoo.cells.registry`).

Importing this package imports every family, so every built-in name exists, and then loads plugins from
the ``rnn_zoo.cells`` entry points.
"""

from zoo.cells import (  # noqa: F401  (registration happens on import)
    gru,
    gru_slim,
    indrnn,
    light_gru,
    ln_gru,
    lstm,
    mgu,
    min_rnn,
    rnn,
)
from zoo.cells.base import Gates, LoopLayer, RecurrentLayer, State, detach_state
from zoo.cells.registry import (
    CellSpec,
    build_cell,
    check_cell_options,
    get_cell_spec,
    list_cells,
    load_plugins,
    plugin_errors,
    register_cell,
)

load_plugins()

__all__ = [
    "CellSpec",
    "Gates",
    "LoopLayer",
    "RecurrentLayer",
    "State",
    "build_cell",
    "check_cell_options",
    "detach_state",
    "get_cell_spec",
    "list_cells",
    "load_plugins",
    "plugin_errors",
    "register_cell",
]
