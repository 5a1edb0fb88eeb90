"""``zoo.load_model``: a logged or registered zoo model back as a predictor of raw inputs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoo.tracking.predict import Predictor


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` inside the block and restore the previous URI after it."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]


def load_model(uri: str, tracking_uri: str | None = None) -> Predictor:
    """Load a zoo model logged to MLflow, ready to ``predict`` raw inputs.

    Args:
        uri: a local model directory, ``runs:/<run_id>/model`` or ``models:/<name>@<alias>``
            (also ``models:/<name>/<version>``).
        tracking_uri: where ``runs:/`` and ``models:/`` URIs are looked up; default: the zoo's rule
            (``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``).

    Returns:
        A :class:`~zoo.tracking.predict.Predictor`: ``.predict(["raw text"])``, ``.task`` (the
        LightningModule), ``.tokenizer``, ``.config``.

    Example:
        >>> model = zoo.load_model("models:/cuisine-gru@champion")  # doctest: +SKIP
        >>> model.predict(["the chef stirred the pot"])  # doctest: +SKIP
    """
    import mlflow

    from zoo.quiet import quiet_model_loading
    from zoo.tracking.pyfunc import _ZooPythonModel
    from zoo.tracking.uri import resolve_tracking_uri

    with using_tracking_uri(resolve_tracking_uri(tracking_uri)), quiet_model_loading():
        pyfunc = mlflow.pyfunc.load_model(uri)
    python_model = pyfunc.unwrap_python_model()
    if not isinstance(python_model, _ZooPythonModel):
        raise TypeError(f"{uri} is not an rnn-zoo model (its python model is {type(python_model).__name__})")
    return python_model.model
