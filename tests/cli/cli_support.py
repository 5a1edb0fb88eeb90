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


#: The generic local-data recipes and the kind of file each reads with ``--data.data_files``.
GENERIC_RECIPES = {"classify/csv": "csv", "tag/conllu": "conllu", "lm/text": "txt", "forecast/csv": "series"}


def write_tiny_data(kind: str, folder: Path) -> Path:
    """A small file of ``kind`` (``csv``: text,label; ``conllu``; ``txt``; ``series``: numeric CSV) in
    ``folder``, large enough for a generic recipe's splits and batches; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    words = ["good", "fine", "great", "bad", "poor", "awful"]
    if kind == "csv":
        path = folder / "reviews.csv"
        rows = [f"{words[i % 6]} film number {i},{'pos' if i % 6 < 3 else 'neg'}" for i in range(60)]
        path.write_text("text,label\n" + "\n".join(rows) + "\n")
    elif kind == "conllu":
        path = folder / "tagged.conllu"
        tags = {"the": "DET", "cat": "NOUN", "dog": "NOUN", "sat": "VERB", "ran": "VERB", ".": "PUNCT"}
        sentences = []
        for i in range(30):
            sent = ["the", "cat" if i % 2 else "dog", "sat" if i % 3 else "ran", "."]
            lines = [f"{j}\t{w}\t{w}\t{tags[w]}\t_\t_\t0\t_\t_\t_" for j, w in enumerate(sent, start=1)]
            sentences.append(f"# sent_id = {i}\n" + "\n".join(lines) + "\n")
        path.write_text("\n".join(sentences) + "\n")
    elif kind == "txt":
        path = folder / "corpus.txt"
        path.write_text("\n".join(f"the {words[i % 6]} cat sat on mat {i % 7}" for i in range(200)) + "\n")
    elif kind == "series":
        import math

        path = folder / "series.csv"
        rows = [f"{t},{math.sin(t / 5):.4f},{math.cos(t / 7):.4f}" for t in range(300)]
        path.write_text("t,x,y\n" + "\n".join(rows) + "\n")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path
