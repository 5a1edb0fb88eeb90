"""Helpers to run the real ``zoo`` entry point, in a subprocess or in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOY_DIR = Path(__file__).resolve().parent
# The toy modules are importable by class path (`_toy.ToyClassifier`) in this process and in subprocesses.
if str(TOY_DIR) not in sys.path:
    sys.path.insert(0, str(TOY_DIR))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def zoo_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO), str(TOY_DIR), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_zoo(*args: str, cwd: Path, timeout: float = 300) -> Result:
    """Run ``python -m zoo ARGS`` in a subprocess, as a user would run ``zoo ARGS``."""
    proc = subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def zoo_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Call ``zoo.cli.main`` in this process (fast; for commands that stop before training)."""
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> Result:
        code = main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return call


def shared_data() -> Path | None:
    """``ZOO_SHARED_DATA``, else ``<repo>/../shared/data``, else ``/work/shared/data``; ``None`` if absent."""
    for candidate in (
        os.environ.get("ZOO_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        "/work/shared/data",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None
