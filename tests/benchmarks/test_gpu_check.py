"""The GPU check script's CPU behaviour: its helpers, the no-CUDA exit, and a CPU dry run of every section."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gc = _load()


def test_max_abs_diff_and_scaling() -> None:
    a = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    b = a.clone()
    b[1, 0] = 3.25
    assert gc.max_abs_diff(a, b) == pytest.approx(0.25)
    # nested states, e.g. an LSTM's (h, c)
    assert gc.max_abs_diff((a, a), (a, b)) == pytest.approx(0.25)
    # relative above 1, absolute below
    assert gc.scaled_diff(a, b) == pytest.approx(0.25 / 3.0)
    assert gc.scaled_diff(a * 0.1, b * 0.1) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="cannot compare"):
        gc.max_abs_diff(a, a[0])
    with pytest.raises(ValueError, match="cannot compare"):
        gc.max_abs_diff((a,), (a, a))


def test_flatten_state_takes_every_tensor_of_nested_states() -> None:
    h, c = torch.zeros(2, 3), torch.ones(2, 3)
    assert len(gc.flatten_state(h)) == 1
    flat = gc.flatten_state([(h, c), h, (c, h)])  # an encoder's per-layer states, LSTM and GRU alike
    assert len(flat) == 5 and flat[1] is c


def test_verdict() -> None:
    assert gc.verdict(0.0, 1e-4) == "ok"
    assert gc.verdict(1e-4, 1e-4) == "ok"
    assert gc.verdict(2e-4, 1e-4) == "FAIL"
    assert gc.verdict(math.nan, 1e-4) == "FAIL"
    assert gc.verdict(math.inf, 1e-4) == "FAIL"


def test_tokens_per_second() -> None:
    assert gc.tokens_per_second(32, 128, 10, 2.0) == pytest.approx(32 * 128 * 10 / 2.0)
    with pytest.raises(ValueError, match="positive"):
        gc.tokens_per_second(1, 1, 1, 0.0)


def test_loss_is_falling() -> None:
    assert gc.loss_is_falling([5.0] * 10 + [4.0] * 10)
    assert not gc.loss_is_falling([4.0] * 10 + [5.0] * 10)
    assert not gc.loss_is_falling([5.0, math.nan, 1.0, 1.0])
    assert not gc.loss_is_falling([3.0])
    assert gc.loss_is_falling([3.0, 2.0])


def test_stream_rows_and_bptt_windows_cover_the_stream_in_order() -> None:
    ids = torch.arange(23)
    rows = gc.stream_rows(ids, 3)
    assert rows.shape == (3, 7)
    assert rows[1].tolist() == list(range(7, 14))  # each row is a contiguous piece of the stream
    windows = list(gc.bptt_windows(rows, 4))
    assert [w[0].size(1) for w in windows] == [4, 2]
    inputs = torch.cat([w[0] for w in windows], 1)
    targets = torch.cat([w[1] for w in windows], 1)
    assert torch.equal(targets, inputs + 1)  # next token, and no step is lost between windows
    assert torch.equal(inputs, rows[:, :-1])
    with pytest.raises(ValueError, match="too short"):
        gc.stream_rows(torch.arange(3), 3)


def test_synthetic_tokens_are_a_learnable_chain() -> None:
    s = gc.synthetic_tokens(5000, 50, seed=1, successors=3)
    assert s.dtype == torch.long and s.numel() == 5000 and int(s.max()) < 50
    assert torch.equal(s, gc.synthetic_tokens(5000, 50, seed=1, successors=3))
    # every token has at most 3 distinct successors
    pairs = set(zip(s[:-1].tolist(), s[1:].tolist(), strict=True))
    for tok in set(s.tolist()):
        assert len({b for a, b in pairs if a == tok}) <= 3


def test_read_ptb(tmp_path: Path) -> None:
    (tmp_path / "ptb.train.txt").write_text(" the cat sat \n the dog \n")
    ids, vocab = gc.read_ptb(tmp_path)
    assert vocab == 5  # the cat sat <eos> dog
    assert ids.tolist() == [0, 1, 2, 3, 0, 4, 3]
    with pytest.raises(FileNotFoundError, match="--ptb"):
        gc.read_ptb(tmp_path / "missing")


def test_markdown_table_and_report() -> None:
    table = gc.markdown_table(["a", "b"], [[1, 0.000123456], ["x|y", "ok"]])
    assert table.splitlines()[1] == "|---|---|"
    assert "0.0001235" in table and "x\\|y" in table
    good, bad = gc.Section("one", ["body"]), gc.Section("two", passed=False)
    assert "**Overall: PASS**" in gc.render_report(["- h"], [good])
    report = gc.render_report(["- h"], [good, bad])
    assert "**Overall: FAIL**" in report and "## two (FAILED)" in report


def test_pick_loop_cell_skips_fused_and_scan_cells() -> None:
    from zoo import get_cell_spec, list_cells

    picked = gc.pick_loop_cell(list_cells(), get_cell_spec)
    if picked is not None:
        spec = get_cell_spec(picked)
        assert not spec.fused and not spec.parallel
    # only fused cells registered: nothing to pick
    assert gc.pick_loop_cell(["gru", "lstm"], get_cell_spec) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_exits_zero_with_a_message_without_cuda(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout
    assert not out.exists()


@pytest.mark.slow
def test_cpu_dry_run_runs_every_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.md"
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    try:
        rc = gc.main(["--cpu-dry-run", "--out", str(out), "--steps", "30"])
    finally:
        torch.set_num_threads(threads)
    report = out.read_text()
    assert report in capsys.readouterr().out
    for title in ("1. Cell parity", "2. Language-model slice", "3. Throughput"):
        assert title in report
    # CPU against CPU with copied weights must agree exactly
    assert "| gru | yes | lengths | 0 | 0 | 0 | ok |" in report
    assert "| lstm | yes | full | 0 | 0 | 0 | ok |" in report
    assert "| gru | yes | encoder: 2 layers, bidirectional, lengths | 0 | 0 | 0 | ok |" in report
    assert "ERROR" not in report
    assert rc == 0 and "**Overall: PASS**" in report
