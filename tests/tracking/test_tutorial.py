"""docs/tracking.md, run: train the quickstart (shortened), load it from the registry, serve it, score it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from tracking_support import REPO, child_env, free_port, port_closes, stop_process_group, wait_http

pytestmark = pytest.mark.slow
DOC = REPO / "docs" / "tracking.md"
RECIPE = REPO / "recipes" / "quickstart.yaml"
NAME = "cuisine-gru"
TEXT = "the chef stirred the pot and added a pinch of saffron"
# the real recipe, shortened: one epoch of a few batches on a small generated set
FAST = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=8",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--data.train_size=512",
    "--data.val_size=64",
    "--data.test_size=64",
]


def test_the_commands_are_the_documented_ones() -> None:
    doc = DOC.read_text()
    for command in (
        "zoo fit -c recipes/quickstart.yaml",
        "mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1",
        f'zoo.load_model("models:/{NAME}@champion")',
        f"zoo serve models:/{NAME}@champion --port 5001",
        '"inputs": [',
        "registered_model_name: cuisine-gru",
    ):
        assert command in doc, f"docs/tracking.md no longer shows {command!r}"


def test_train_register_load_serve(tmp_path: Path) -> None:
    zoo_cli = [sys.executable, "-m", "zoo"]
    env = child_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    fit = subprocess.run(
        [*zoo_cli, "fit", "-c", str(RECIPE), *FAST],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert fit.returncode == 0, fit.stderr[-4000:]
    assert f"Registered {NAME} version 1" in fit.stdout
    # the load and serve lines are what the run ends with
    assert fit.stdout.rstrip().splitlines()[-2:] == [
        f'Load it:   zoo.load_model("models:/{NAME}@champion")',
        f"Serve it:  zoo serve models:/{NAME}@champion",
    ]
    assert (tmp_path / "mlflow.db").is_file()

    script = (
        "import json, zoo\n"
        f"model = zoo.load_model('models:/{NAME}@champion')\n"
        f"print(json.dumps(model.predict([{TEXT!r}])))\n"
    )
    load = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert load.returncode == 0, load.stderr[-4000:]
    predicted = json.loads(load.stdout.strip().splitlines()[-1])
    assert predicted[0]["label"] in predicted[0]["probabilities"]

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*zoo_cli, "serve", f"models:/{NAME}@champion", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=180, log=log)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": [TEXT]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
        # SIGTERM to `zoo serve` alone (as a service manager sends it) stops the server it started too
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert port_closes(port, timeout=30), f"the server on port {port} outlived `zoo serve`"
    finally:
        stop_process_group(proc)
    assert served[0]["label"] == predicted[0]["label"]
    assert served[0]["probabilities"] == pytest.approx(predicted[0]["probabilities"], abs=1e-6)
