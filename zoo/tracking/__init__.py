"""MLflow tracking for the zoo: the default store, the run's contents, pyfunc models, registry, serving.

Heavy modules (mlflow, Lightning) load on first use of a name, so ``import zoo`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TRACKING_URI_ENV": "uri",
    "TrackingServerUnreachable": "uri",
    "check_tracking_server": "uri",
    "default_tracking_uri": "uri",
    "ensure_store": "uri",
    "wait_for_store": "uri",
    "resolve_tracking_uri": "uri",
    "ZooMLFlowLogger": "logger",
    "make_logger": "logger",
    "LogModelCallback": "callbacks",
    "MLflowSaveConfigCallback": "callbacks",
    "RunInfoCallback": "callbacks",
    "Predictor": "predict",
    "log_pyfunc_model": "pyfunc",
    "RegistryNameConflict": "registry",
    "register": "registry",
    "load_model": "load",
    "serve": "serve",
    "serve_main": "serve",
    "start_server": "serve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(f"zoo.tracking.{module}"), name)
