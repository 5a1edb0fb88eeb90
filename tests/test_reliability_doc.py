"""docs/reliability.md names only tests that exist, so the page cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _named_tests(text: str) -> list[tuple[str, str]]:
    """``(file, test)`` pairs from backticked references; ``::name`` alone refers to the last file named."""
    pairs = []
    current = ""
    for ref in re.findall(r"`([^`]*::[^`]*|tests/[^`]+\.py)`", text):
        for part in re.split(r",\s*", ref):
            file, _, name = part.partition("::")
            current = file or current
            if name:
                pairs.append((current, re.sub(r"\[.*\]$", "", name)))
    return pairs


def test_every_test_named_in_the_reliability_page_exists() -> None:
    pairs = _named_tests((ROOT / "docs" / "reliability.md").read_text())
    assert len(pairs) > 40
    missing = []
    for file, name in pairs:
        path = ROOT / (file if file.startswith("tests/") else f"tests/{file}")
        if not path.is_file() or not re.search(rf"def {re.escape(name)}\(", path.read_text()):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
