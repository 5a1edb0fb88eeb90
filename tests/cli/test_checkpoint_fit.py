"""A checkpoint trained with other model settings is refused with the config that fits, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import run_zoo

TINY = (
    "-c", "quickstart",
    "--model.encoder.hidden_size", "8",
    "--model.embedding_dim", "8",
    "--data.train_size", "64",
    "--data.val_size", "16",
    "--data.test_size", "16",
    "--trainer.max_epochs", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.logger", "false",
)  # fmt: skip


@pytest.mark.slow
def test_a_checkpoint_of_another_cell_names_the_config_that_fits(tmp_path: Path) -> None:
    fitted = run_zoo("fit", *TINY, "--model.encoder.cell", "lstm", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.output[-3000:]
    # `best` is the newest folder of the recipe, trained with the LSTM; the recipe's own cell is a GRU
    result = run_zoo("test", *TINY, "--ckpt_path", "best", cwd=tmp_path)
    assert result.returncode == 2, result.output[-3000:]
    assert "Traceback" not in result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("zoo: error:")]
    assert "was trained with another model configuration" in line
    assert "config.yaml" in line  # the fit's resolved config, written beside its checkpoints
    config = next(tmp_path.glob("runs/quickstart/checkpoints/version_*/config.yaml"))
    again = run_zoo(
        "test", "-c", str(config), "--ckpt_path", "best", "--trainer.logger", "false", cwd=tmp_path
    )
    assert again.returncode == 0, again.output[-3000:]
