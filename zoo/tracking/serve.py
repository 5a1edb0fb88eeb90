"""``zoo serve MODEL_URI``: a REST scoring endpoint for a zoo model, MLflow's scoring server under uvicorn.

The model is fetched into a local directory (a local model directory is served in place) and served by
:mod:`zoo.tracking.scoring_app`: MLflow's scoring app (what ``mlflow models serve --env-manager local``
runs), behind a guard that answers a request without ``Content-Type`` with 415 instead of MLflow's
500. The server listens on 127.0.0.1 unless told otherwise, uses the current Python environment (nothing
is downloaded but the model) and answers ``GET /ping``, ``GET /health`` and ``POST /invocations`` with
``{"inputs": ["raw text", ...]}`` (text tasks) or ``{"dataframe_split": {"columns": [...], "data":
[[...], ...]}}`` (a forecasting window).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from zoo.tracking.scoring_app import MODEL_PATH_ENV
from zoo.tracking.uri import TRACKING_URI_ENV, resolve_tracking_uri


def serve_command(host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> list[str]:
    """The uvicorn command line that serves the model named by ``ZOO_SERVE_MODEL_PATH``."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "zoo.tracking.scoring_app:app",
    ]


def local_model(model_uri: str, tracking_uri: str | None = None) -> str:
    """A local directory holding the model: ``model_uri`` itself if it is one, else a download of it
    (``runs:/``, ``models:/``...) into a temporary directory removed when this process exits."""
    if Path(model_uri).is_dir():
        return str(Path(model_uri).resolve())
    import mlflow

    target = tempfile.mkdtemp(prefix="zoo-serve-")
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    return str(
        mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=target, tracking_uri=resolve_tracking_uri(tracking_uri)
        )
    )


def serve_env(model_path: str, tracking_uri: str | None = None) -> dict[str, str]:
    """The environment for the server: the model directory to serve, this venv's ``bin`` first on
    ``PATH`` and the resolved tracking URI (for anything the model looks up while loading)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env[TRACKING_URI_ENV] = resolve_tracking_uri(tracking_uri)
    env[MODEL_PATH_ENV] = model_path
    return env


def start_server(
    model_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    tracking_uri: str | None = None,
    workers: int = 1,
    **popen: object,
) -> subprocess.Popen[bytes]:
    """Fetch the model, then start the server in its own process group (:func:`stop_server` stops it)."""
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        serve_command(host, port, workers),
        env=serve_env(local_model(model_uri, tracking_uri), tracking_uri),
        start_new_session=True,
        **popen,
    )


def serve(
    model_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    tracking_uri: str | None = None,
    workers: int = 1,
) -> int:
    """Serve ``model_uri`` in the foreground until interrupted; returns the server's exit status.

    Ctrl-C (SIGINT) or SIGTERM to this process stops the whole server: uvicorn and its worker processes
    are stopped as one process group.
    """
    print(f"Serving {model_uri} on http://{host}:{port}/invocations (Ctrl-C stops it)", flush=True)
    proc = start_server(model_uri, host, port, tracking_uri, workers)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return stop_server(proc)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            stop_server(proc)


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Stop a server from :func:`start_server` and its children (SIGTERM, then SIGKILL); its exit status."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def serve_main(argv: Sequence[str] | None = None) -> int:
    """``zoo serve MODEL_URI [--host 127.0.0.1] [--port 5000] [--workers 1] [--tracking-uri URI]``."""
    parser = argparse.ArgumentParser(
        prog="zoo serve",
        description="Serve a logged or registered rnn-zoo model as a REST endpoint (MLflow scoring server).",
    )
    parser.add_argument(
        "model_uri", help="models:/<name>@<alias>, runs:/<run_id>/model, or a model directory"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default: 1)")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help=f"where models:/ URIs live (default: ${TRACKING_URI_ENV} or ./mlflow.db)",
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return serve(args.model_uri, args.host, args.port, args.tracking_uri, args.workers)


if __name__ == "__main__":
    raise SystemExit(serve_main())
