"""Cells from another package arrive through the ``rnn_zoo.cells`` entry points.

A tiny plugin distribution is "installed" into a temporary directory (package plus ``.dist-info`` with
``entry_points.txt``) and a fresh interpreter with that directory on ``PYTHONPATH`` imports the zoo.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CELLS_PY = '''
"""A leaky tanh cell, exposed as a class entry point."""
import torch
from torch import nn

from zoo.cells import LoopLayer
from zoo.cells.gru import GRUCho


class LeakyCell(LoopLayer):
    """Leaky tanh RNN: h_t = (1 - a) * h_{t-1} + a * tanh(W x_t + b + U h_{t-1}), with a fixed a = 0.5.

    A test plugin (no paper); parameters HI + H^2 + H.
    """

    paper = "test plugin, no paper"

    def __init__(self, input_size, hidden_size, leak=0.5):
        super().__init__(input_size, hidden_size)
        self.leak = leak
        self.lin = nn.Linear(input_size, hidden_size)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.reset_parameters()

    def reset_parameters(self):
        """nn.Linear's init for W and b; U from U(-1/sqrt(H), 1/sqrt(H))."""
        self.lin.reset_parameters()
        nn.init.uniform_(self.weight_hh, -self.hidden_size ** -0.5, self.hidden_size ** -0.5)

    def project(self, x):
        return self.lin(x)

    def recur(self, p_t, state):
        h = torch.lerp(state, torch.tanh(p_t + state @ self.weight_hh.T), self.leak)
        return h, h


class ChoSubclass(GRUCho):
    """gru_cho under another name: a subclass inherits cell_name but is registered in its own right.

    Same equations, paper and parameter count 3(HI + H^2 + 2H) as gru_cho.
    """
'''

REGISTERED_PY = '''
"""A module entry point: importing it registers its cell."""
import torch
from torch import nn

from zoo.cells import LoopLayer, register_cell


@register_cell("plugin_rnn", paper="test plugin, no paper")
class PluginRNN(LoopLayer):
    """Elman tanh RNN without recurrent bias, h_t = tanh(W x_t + b + U h_{t-1}); params HI + H^2 + H."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.lin = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)

    def reset_parameters(self):
        """nn.Linear's init."""
        self.lin.reset_parameters()
        self.rec.reset_parameters()

    def project(self, x):
        return self.lin(x)

    def recur(self, p_t, state):
        h = torch.tanh(p_t + self.rec(state))
        return h, h
'''

BROKEN_PY = '''
from zoo.cells import LoopLayer, register_cell


@register_cell("half_loaded", paper="never")
class HalfLoaded(LoopLayer):
    """Registered before the module fails: the failed plugin must not leave it behind."""


raise RuntimeError("this plugin is broken on purpose")
'''

ENTRY_POINTS = """
[rnn_zoo.cells]
leaky = zoo_plugin_demo.cells:LeakyCell
cho_subclass = zoo_plugin_demo.cells:ChoSubclass
registered = zoo_plugin_demo.registered
broken_cell = zoo_plugin_demo.broken
not_a_cell = json:dumps
"""

PROBE = """
import json, warnings

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import zoo
    import zoo.cells

import torch

report = {
    "cells": zoo.list_cells(),
    "errors": zoo.cells.plugin_errors(),
    "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    "sources": {n: zoo.get_cell_spec(n).source for n in ("leaky", "plugin_rnn", "cho_subclass", "gru")},
    "options": zoo.get_cell_spec("leaky").options,
}
x = torch.randn(2, 5, 3)
for name in ("gru", "gru_cho", "leaky", "plugin_rnn", "cho_subclass"):
    out, _ = zoo.build_cell(name, 3, 4)(x, lengths=torch.tensor([5, 2]))
    assert out.shape == (2, 5, 4) and torch.all(out[1, 2:] == 0), name
out, _ = zoo.RecurrentEncoder(cell="leaky", input_size=3, hidden_size=4, num_layers=2, bidirectional=True)(x)
report["encoder_out"] = list(out.shape)
print("REPORT " + json.dumps(report))
"""


def install_plugin(site: Path) -> None:
    """Lay out what ``pip install`` of a wheel would: the package and its ``.dist-info``."""
    pkg = site / "zoo_plugin_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cells.py").write_text(CELLS_PY)
    (pkg / "registered.py").write_text(REGISTERED_PY)
    (pkg / "broken.py").write_text(BROKEN_PY)
    info = site / "zoo_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS).lstrip())
    (info / "top_level.txt").write_text("zoo_plugin_demo\n")


def run_python(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=site, capture_output=True, text=True, timeout=300
    )


def test_plugin_cells_are_found_and_a_broken_plugin_is_reported(tmp_path: Path) -> None:
    install_plugin(tmp_path)
    proc = run_python(tmp_path, "-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))
    report = json.loads(line.removeprefix("REPORT "))

    cells = report["cells"]
    for name in ("leaky", "plugin_rnn", "cho_subclass", "gru", "gru_cho", "indrnn"):
        assert name in cells
    assert "half_loaded" not in cells, "a plugin that failed half way must leave no cell behind"
    assert "broken_cell" not in cells and "not_a_cell" not in cells

    errors = report["errors"]
    assert set(errors) == {"broken_cell", "not_a_cell"}
    assert "RuntimeError: this plugin is broken on purpose" in errors["broken_cell"]
    assert "must name a module that registers cells or a RecurrentLayer subclass" in errors["not_a_cell"]
    for name in ("broken_cell", "not_a_cell"):
        assert any(f"plugin {name!r}" in w for w in report["warnings"]), report["warnings"]

    assert report["sources"] == {
        "leaky": "zoo-plugin-demo:leaky",
        "plugin_rnn": "zoo-plugin-demo:registered",
        "cho_subclass": "zoo-plugin-demo:cho_subclass",
        "gru": "zoo",
    }
    assert report["options"] == ["leak"]
    assert report["encoder_out"] == [2, 5, 8]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suite", "at_least"),
    [("test_contract.py", 3 * 9), ("test_properties.py", 3 * 12)],
    ids=["contract", "properties"],
)
def test_the_generated_suites_cover_plugin_cells(tmp_path: Path, suite: str, at_least: int) -> None:
    """The zoo's contract and property tests are generated from the registry, so they also test a
    plugin's cells (every property, hypothesis included, for each of the three plugin cells)."""
    install_plugin(tmp_path)
    select = "leaky or plugin_rnn or cho_subclass"
    proc = run_python(
        tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select,
        str(REPO / "tests" / "cells" / suite),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= at_least and "skipped" not in summary, summary
