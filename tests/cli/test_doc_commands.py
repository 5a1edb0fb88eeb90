"""Every ``zoo`` command in the fenced ``bash`` blocks of docs/cli.md, docs/data.md and docs/recipes.md runs,
as written, through the real entry point, in document order, in a folder holding the small files they name.

Training commands (``fit``/``validate``/``test``/``predict`` that do not print a config) get a tiny epoch
appended (:data:`TINY`), so each trains, checkpoints and tracks for real in seconds. A block right after an
HTML comment ``<!-- not run by tests: REASON -->`` is skipped (for a server that runs until stopped).
Commands on ``../shared/data`` are ``data``-marked and skip when the corpora are absent.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import REPO, shared_data, write_tiny_data, zoo_env

PAGES = ("cli.md", "data.md", "recipes.md")
SKIP_MARK = "<!-- not run by tests:"
TINY = (
    "--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 2 "
    "--trainer.limit_test_batches 2 --trainer.limit_predict_batches 2 --trainer.enable_progress_bar false"
)
# `zoo predict MODEL ...` loads a trained model; only the recipe form (`-c`) trains-and-predicts
TRAINING = re.compile(r"^(python -m )?zoo ((fit|validate|test)\b|predict\b.*\s(-c|--config)\s)")


def doc_commands(page: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of each ``zoo`` / ``python -m zoo`` line in the page's bash blocks, with
    backslash continuations joined."""
    lines = (REPO / "docs" / page).read_text().splitlines()
    found: list[tuple[int, str]] = []
    in_block = skip = False
    pending, start = "", 0
    for number, line in enumerate(lines, start=1):
        if not in_block:
            if line.startswith("```bash"):
                in_block = True
                skip = number > 1 and lines[number - 2].startswith(SKIP_MARK)
            continue
        if line.startswith("```"):
            in_block = False
            continue
        if skip:
            continue
        if not pending:
            start = number
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        command, pending = pending.strip(), ""
        if command.startswith(("zoo ", "python -m zoo ")):
            found.append((start, command))
    return found


def with_tiny_epoch(command: str) -> str:
    """``command`` with :data:`TINY` inserted before its trailing comment or redirection, if it trains."""
    if not TRAINING.match(command) or "--print_config" in command:
        return command
    # the doc's own comment and a redirection stay at the end (no `#` or `>` occurs inside the quotes here)
    cut = re.search(r"\s(#|>|\|)", command)
    head, tail = (command[: cut.start()], command[cut.start() :]) if cut else (command, "")
    return f"{head} {TINY}{tail}"


def prepare(folder: Path) -> None:
    """The files the pages name, small: their own data (docs/data.md) and ../shared/data (a link)."""
    write_tiny_data("csv", folder)  # reviews.csv
    text = (folder / "reviews.csv").read_text().splitlines()
    (folder / "train.csv").write_text("\n".join(text[:49]) + "\n")
    (folder / "dev.csv").write_text("\n".join([text[0], *text[49:]]) + "\n")
    (folder / "reviews.tsv").write_text("\n".join(row.replace(",", "\t") for row in text) + "\n")
    write_tiny_data("conllu", folder)  # tagged.conllu
    write_tiny_data("txt", folder)  # corpus.txt
    write_tiny_data("series", folder)  # series.csv
    corpora = shared_data()
    if corpora is not None:
        (folder.parent / "shared").mkdir(exist_ok=True)
        (folder.parent / "shared" / "data").symlink_to(corpora)


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One prepared folder per page, shared by its commands (a `test` reads the `fit` before it)."""
    folders = {}
    for page in PAGES:
        folder = tmp_path_factory.mktemp(page.removesuffix(".md")) / "work"
        folder.mkdir()
        prepare(folder)
        folders[page] = folder
    return folders


def params() -> list:
    out = []
    for page in PAGES:
        for number, command in doc_commands(page):
            marks = [pytest.mark.data] if "../shared/data" in command else []
            out.append(pytest.param(page, command, marks=marks, id=f"{page}:{number}"))
    return out


def test_the_pages_show_commands_and_the_extractor_finds_them() -> None:
    cli = [c for _, c in doc_commands("cli.md")]
    assert "zoo fit -c quickstart --model.encoder.cell lstm        # swap the cell" in cli
    assert any(
        c.startswith("zoo fit -c classify/csv --data.data_files reviews.csv")
        for _, c in doc_commands("data.md")
    )
    joined = [c for _, c in doc_commands("recipes.md") if "tag/ewt-gru" in c]
    assert joined and "--data.data_files '{train:" in joined[0] and "\\" not in joined[0]
    assert with_tiny_epoch("zoo fit -c q > my.yaml") == f"zoo fit -c q {TINY} > my.yaml"
    assert with_tiny_epoch("zoo cells 'gru*'") == "zoo cells 'gru*'"


@pytest.mark.slow
@pytest.mark.parametrize(("page", "command"), params())
def test_doc_command_runs(page: str, command: str, workdirs: dict[str, Path]) -> None:
    if "../shared/data" in command and shared_data() is None:
        pytest.skip("../shared/data is absent (set ZOO_SHARED_DATA): this command trains on a real corpus")
    env = zoo_env()
    zoo = f"{sys.executable} -m zoo"
    script = f'zoo() {{ {zoo} "$@"; }}\n' + with_tiny_epoch(command).replace("python -m zoo ", "zoo ", 1)
    proc = subprocess.run(
        ["bash", "-c", script], cwd=workdirs[page], env=env, capture_output=True, text=True, timeout=300
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{page}: {command}\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
