"""The ASGI app ``zoo serve`` runs under uvicorn: MLflow's scoring server, with one gap closed.

MLflow's ``/invocations`` fails with an ``AttributeError`` (an empty 500) on a request without a
``Content-Type`` header (mlflow 3.x reads ``content_type.split`` on ``None``). This app answers such a
request itself with 415 and the header to send; everything else goes to MLflow's app unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

#: Environment variable naming the local model directory the app serves (set by ``zoo serve``).
MODEL_PATH_ENV = "ZOO_SERVE_MODEL_PATH"

NO_CONTENT_TYPE = (
    b"A request to /invocations needs a Content-Type header: application/json for "
    b'{"inputs": [...]} or {"dataframe_split": ...}, text/csv or application/vnd.apache.parquet.\n'
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def require_content_type(app: ASGIApp) -> ASGIApp:
    """Wrap ``app``: a POST to ``/invocations`` without a ``Content-Type`` gets 415 with a message."""

    async def guarded(
        scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "http" and scope.get("path") == "/invocations" and scope.get("method") == "POST":
            given = dict(scope.get("headers") or []).get(b"content-type", b"")
            if not given.strip():
                headers = [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(NO_CONTENT_TYPE)).encode()),
                ]
                await send({"type": "http.response.start", "status": 415, "headers": headers})
                await send({"type": "http.response.body", "body": NO_CONTENT_TYPE})
                return
        await app(scope, receive, send)

    return guarded


def build_app(model_path: str) -> ASGIApp:
    """MLflow's scoring app for the model at ``model_path``, behind :func:`require_content_type`."""
    from mlflow.pyfunc import scoring_server

    from zoo.quiet import quiet_model_loading

    with quiet_model_loading():  # the uvicorn process does not run the zoo command's filters
        model = scoring_server.load_model_with_mlflow_config(model_path)
    return require_content_type(scoring_server.init(model))


def __getattr__(name: str) -> Any:
    # built on first access (uvicorn imports "zoo.tracking.scoring_app:app"), so that importing the
    # module for require_content_type does not need a model
    if name == "app":
        return build_app(os.environ[MODEL_PATH_ENV])
    raise AttributeError(name)
