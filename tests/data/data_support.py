"""Fixtures for the data tests: offline hub settings, the shared corpora, small local files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The hub is unreachable in tests; without these every hub call retries for ~20 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """``$ZOO_SHARED_DATA``, ``<repo>/../shared/data`` or ``/work/shared/data``; ``None`` if absent."""
    candidates = [
        os.environ.get("ZOO_SHARED_DATA"),
        REPO_ROOT.parent / "shared" / "data",
        "/work/shared/data",
    ]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared corpora not found: set ZOO_SHARED_DATA or place them in ../shared/data")
    return path


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory for the real-data modules, so each corpus is tokenised once per session."""
    return tmp_path_factory.mktemp("zoo-cache")


SENTIMENT_ROWS = [
    ("a wonderful film", "pos"),
    ("truly awful acting", "neg"),
    ("i loved every minute", "pos"),
    ("boring and far too long", "neg"),
    ("a great cast", "pos"),
    ("the worst film of the year", "neg"),
    ("funny and warm", "pos"),
    ("dull", "neg"),
]


def write_csv(path: Path, rows: list[tuple[str, object]], header: str = "text,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    return path


@pytest.fixture
def sentiment_files(tmp_path: Path) -> dict[str, str]:
    return {
        "train": str(write_csv(tmp_path / "train.csv", SENTIMENT_ROWS * 4)),
        "validation": str(write_csv(tmp_path / "dev.csv", SENTIMENT_ROWS[:4])),
        "test": str(write_csv(tmp_path / "test.csv", SENTIMENT_ROWS[4:])),
    }


CONLLU = """# newdoc id = d1
# sent_id = 1
# text = I don't know.
1	I	I	PRON	PRP	_	3	nsubj	_	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	_	4	aux	_	_
3	n't	not	PART	RB	_	4	advmod	_	_
4	know	know	VERB	VB	_	0	root	_	_
4.1	knows	know	VERB	VB	_	_	_	4:conj	_
5	.	.	PUNCT	.	_	4	punct	_	_

# sent_id = 2
1	Go	go	VERB	VB	_	0	root	_	_
2	home	home	ADV	RB	_	1	advmod	_	_

"""


@pytest.fixture
def conllu_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    return path
