"""The built wheel ships the recipes: `zoo recipes path` points inside the installed package, and the
quickstart runs from there. Offline: the wheel is built without isolation and installed without deps into a
fresh venv that sees the already-installed dependencies through a path file."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from cli_support import REPO


def _clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH, which would put the source tree before the installed wheel."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONWARNINGS="ignore")
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env or _clean_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_wheel_ships_the_recipes_and_runs_the_quickstart(tmp_path: Path) -> None:
    build = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(REPO)],
        cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("rnn_zoo-*.whl")

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path)
                .stdout.strip())  # fmt: skip
    # The dependencies come from this interpreter's site-packages as a plain path entry (its .pth files,
    # such as an editable install of this repo, are not processed), after the venv's own packages.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    env = _clean_env()
    zoo = str(venv / "bin" / "zoo")
    path = _run([zoo, "recipes", "path", "quickstart"], tmp_path, env)
    assert path.returncode == 0, path.stderr
    recipe = Path(path.stdout.strip())
    assert recipe.is_file() and recipe.is_relative_to(site / "zoo" / "recipes"), recipe
    forecast = Path(_run([zoo, "recipes", "path", "forecast/sunspots-gru"], tmp_path, env).stdout.strip())
    assert (forecast.parent / "sunspots_monthly.csv").is_file()
    for generic in ("classify/csv", "tag/conllu", "lm/text", "forecast/csv"):
        shipped = Path(_run([zoo, "recipes", "path", generic], tmp_path, env).stdout.strip())
        assert shipped.is_relative_to(site / "zoo" / "recipes") and shipped.is_file(), generic

    has_tasks = _run([str(python), "-c", "import zoo.tasks, zoo.data"], tmp_path, env)
    if has_tasks.returncode != 0:
        pytest.skip("the wheel has no zoo.tasks / zoo.data yet: the quickstart cannot run from it")
    # by name, from a folder without a `recipes` directory: resolved inside the installed package
    fit = _run([zoo, "fit", "-c", "quickstart", "--trainer.fast_dev_run", "true",
                "--trainer.enable_progress_bar", "false"], tmp_path, env)  # fmt: skip
    assert fit.returncode == 0, fit.stdout[-2000:] + fit.stderr[-4000:]
