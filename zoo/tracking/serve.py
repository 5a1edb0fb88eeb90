"""``zoo serve MODEL_URI``: a REST scoring endpoint for a zoo model, through ``mlflow models serve``.

The server listens on 127.0.0.1 unless told otherwise, uses the current Python environment
(``--env-manager local``: nothing is downloaded) and answers ``GET /ping``, ``GET /health`` and
``POST /invocations`` with ``{"inputs": ["raw text", ...]}`` (text tasks) or
``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (a forecasting window).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from zoo.tracking.uri import TRACKING_URI_ENV, resolve_tracking_uri


def serve_command(model_uri: str, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> list[str]:
    """The ``mlflow models serve`` command line that serves ``model_uri`` from this environment."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
        "-w",
        str(workers),
    ]


def serve_env(tracking_uri: str | None = None) -> dict[str, str]:
    """The environment for the server: this venv's ``bin`` first on ``PATH`` (mlflow runs ``uvicorn``
    from the PATH) and the resolved tracking URI, so ``models:/`` URIs resolve as in this process."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env[TRACKING_URI_ENV] = resolve_tracking_uri(tracking_uri)
    return env


def start_server(
    model_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    tracking_uri: str | None = None,
    workers: int = 1,
    **popen: object,
) -> subprocess.Popen[bytes]:
    """Start the server in its own process group (stop it with ``os.killpg(proc.pid, SIGTERM)``)."""
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        serve_command(model_uri, host, port, workers),
        env=serve_env(tracking_uri),
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

    Ctrl-C (SIGINT) or SIGTERM to this process stops the whole server: ``mlflow models serve`` runs
    uvicorn as a child of its own, so both are stopped as one process group.
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
        description="Serve a logged or registered rnn-zoo model as a REST endpoint (mlflow models serve).",
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
