"""Where runs and models go: the tracking URI, checked before any training starts.

The rule: ``MLFLOW_TRACKING_URI`` when it is set, else a SQLite store ``mlflow.db`` in the working
directory (MLflow's own default; the model registry needs a database, so Lightning's ``file:./mlruns``
fallback is not used). The URI is resolved when it is asked for, not when a module is imported.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
STORE_WAIT_S = 300.0


class TrackingServerUnreachable(RuntimeError):
    """The MLflow tracking server named by the tracking URI did not answer."""


def default_tracking_uri(cwd: str | os.PathLike[str] | None = None) -> str:
    """The embedded SQLite store in ``cwd`` (default: the current working directory), as an absolute URI."""
    base = Path.cwd() if cwd is None else Path(cwd)
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Return ``uri`` if given, else ``MLFLOW_TRACKING_URI`` if set, else :func:`default_tracking_uri`.

    A relative ``sqlite:///name.db`` is made absolute against the working directory, so that every
    process (and every rank) that resolves it opens the same file.
    """
    chosen = uri or os.environ.get(TRACKING_URI_ENV) or default_tracking_uri()
    path = sqlite_path(chosen)
    if path is not None and not path.is_absolute():
        chosen = f"sqlite:///{path.resolve()}"
    return chosen


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or ``None`` for any other kind of URI."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingServerUnreachable` naming ``uri`` when an HTTP tracking server does not answer.

    Other URIs (SQLite, databases) are not checked here: they are opened on first use.

    Args:
        uri: a resolved tracking URI.
        timeout: seconds to wait for the server's ``/health`` endpoint.
    """
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status} from {url}"
    except (urllib.error.URLError, OSError) as err:
        problem = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    raise TrackingServerUnreachable(
        f"MLflow tracking server {uri} is not reachable ({problem}). Nothing was trained. Start the server "
        f"(e.g. `mlflow server --host 127.0.0.1 --port 5000`), point {TRACKING_URI_ENV} at a running one, "
        f"or unset {TRACKING_URI_ENV} to track into the local SQLite store {default_tracking_uri()}."
    )


def ensure_store(uri: str) -> None:
    """Create a fresh SQLite store (schema migrations included) if it does not exist yet; rank 0 only.

    Several processes opening a fresh store at once can corrupt it. The store is built under a temporary
    name and renamed into place, so other ranks (see :func:`wait_for_store`) only ever see a finished one,
    and under a file lock beside it (``.mlflow.db.lock``, removed afterwards), so that of two runs started
    together in an empty folder one builds the store and the other waits for it (each building and
    renaming its own left the first one writing to a replaced file: "attempt to write a readonly
    database").
    """
    path = sqlite_path(uri)
    if path is None or path.exists():
        return
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with FileLock(str(lock), timeout=STORE_WAIT_S):
        if path.exists():  # built by another process while this one waited for the lock
            return
        building = path.with_name(f".{path.name}.{os.getpid()}.creating")
        MlflowClient(f"sqlite:///{building}").search_experiments(max_results=1)
        os.replace(building, path)
    # Safe to remove once the store exists: a process that takes a new lock finds the store and returns.
    lock.unlink(missing_ok=True)


def wait_for_store(uri: str, timeout: float | None = None) -> None:
    """On ranks other than 0: wait until rank 0 has created the SQLite store (no-op for other URIs).

    Raises:
        TimeoutError: naming the store, when it does not appear within ``timeout`` seconds
            (default :data:`STORE_WAIT_S`).
    """
    path = sqlite_path(uri)
    if path is None:
        return
    limit = STORE_WAIT_S if timeout is None else timeout
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"waited {limit:.0f} s for rank 0 to create the MLflow store {path}; rank 0 creates it when "
                "it builds its logger. Check that rank 0 runs and resolves the same tracking URI."
            )
        time.sleep(0.2)
