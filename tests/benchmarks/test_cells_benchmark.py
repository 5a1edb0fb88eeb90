"""benchmarks/cells.py and linear_ce.py run at tiny sizes; cells.py refuses GPU options it cannot honour."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cells.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cells_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_a_row_per_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cells.json"
    args = ["--T", "64", "--cells", "mgu", "min_gru", "--repeats", "1", "--batch", "2"]
    _load().main([*args, "--input-size", "4", "--hidden-size", "8", "--clock", "cpu", "--json", str(out)])
    data = json.loads(out.read_text())
    names = [row["cell"] for row in data["rows"]]
    assert names == [
        "torch.nn.GRU", "torch.nn.LSTM", "torch.nn.RNN",
        "mgu", "min_gru", "min_gru[mode=loop]", "min_gru[mode=scan]",
    ]  # fmt: skip
    assert all(row["T"] == 64 and row["ms"] > 0 and row["ratio_to_gru"] > 0 for row in data["rows"])
    assert data["machine"]["device"] == "cpu"
    assert "| mgu |" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors without CUDA")
@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--device", "cuda"], "sees no CUDA device"), (["--graphs"], "--graphs needs --device cuda")],
)
def test_gpu_options_without_a_gpu_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _load().main(argv)
    assert message in capsys.readouterr().err


def test_linear_ce_benchmark_runs_and_prints_a_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("linear_ce_benchmark", SCRIPT.parent / "linear_ce.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--rows", "12", "--features", "5", "--vocab", "37", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "| linear_cross_entropy |" in out and "rounds (fused/plain):" in out
