"""The zoo's MLflow pyfunc model: checkpoint + ``tokenizer.json`` + config, raw inputs in.

``mlflow.pytorch.log_model`` is not used: it exports with ``torch.export``, which fixes the sequence
length. The checkpoint is rebuilt through the task's own class, so any registered cell works.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc.model import PythonModel

import zoo
from zoo.tracking.predict import TEXT_KINDS, PredictInputError, Predictor

ARTIFACTS = ("checkpoint", "zoo_model", "tokenizer", "config")

#: The files MLflow runs to build the model when it is loaded ("models from code": no pickle is written).
MODEL_CODE = {
    "text": Path(__file__).with_name("model_text.py"),
    "series": Path(__file__).with_name("model_series.py"),
}


class _ZooPythonModel(PythonModel):
    model: Predictor

    def load_context(self, context: Any) -> None:
        """Rebuild the task from the model's artifacts."""
        artifacts = context.artifacts
        self.model = Predictor.from_files(
            artifacts["checkpoint"],
            artifacts["zoo_model"],
            tokenizer=artifacts.get("tokenizer"),
            config=artifacts.get("config"),
        )

    def _predict(self, inputs: Any, options: dict[str, Any]) -> Any:
        """``Predictor.predict``, with input it cannot take as MLflow's invalid-parameter error, which the
        scoring server answers with 400 and the message only (any other error carries a stack trace)."""
        try:
            return self.model.predict(inputs, **options)
        except PredictInputError as err:
            raise MlflowException.invalid_parameter_value(str(err)) from None


class TextPythonModel(_ZooPythonModel):
    """Pyfunc model of a text task: a list of raw strings (or a one-column DataFrame) in."""

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Predict from raw strings; see ``zoo.tracking.predict`` for the output of each task kind."""
        return self._predict(model_input, params or {})


class SeriesPythonModel(_ZooPythonModel):
    """Pyfunc model of a forecaster: one window (DataFrame, rows = time steps, columns = features) in."""

    # a DataFrame hint gives MLflow no schema (a window's comes from its input example) and tells it that
    # the hint is deliberate (no "add type hints" warning when the class is defined)
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Forecast ``horizon`` steps after the window, in original units (one record per step)."""
        return self._predict(model_input, {})


def series_example(num_features: int, length: int, names: list[str] | None = None) -> pd.DataFrame:
    """A window of zeros with the model's feature columns, as the pyfunc input example."""
    columns = names or [f"feature_{i}" for i in range(num_features)]
    return pd.DataFrame(np.zeros((length, num_features), dtype=np.float64), columns=columns)


def log_pyfunc_model(
    checkpoint: str | Path,
    info: dict[str, Any],
    tokenizer: Any = None,
    config_yaml: str | None = None,
    input_example: Any = None,
    name: str = "model",
) -> Any:
    """Log a trained task as a pyfunc model into the active MLflow run.

    Args:
        checkpoint: a Lightning checkpoint of the task (``state_dict`` + ``hyper_parameters``).
        info: metadata: ``task_class`` and ``kind`` required; ``max_length``, ``data``, ``generation``.
        tokenizer: a ``tokenizers.Tokenizer`` or a path to its ``tokenizer.json`` (text tasks).
        config_yaml: the resolved training config.
        input_example: raw strings (text) or a window DataFrame (forecasting); sets the signature.
        name: the model's name in the run.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` points at the logged model).
    """
    kind = info["kind"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        artifacts = {"checkpoint": str(checkpoint), "zoo_model": str(folder / "zoo_model.json")}
        (folder / "zoo_model.json").write_text(json.dumps(info, indent=2))
        if tokenizer is not None:
            if isinstance(tokenizer, (str, Path)):
                artifacts["tokenizer"] = str(tokenizer)
            else:
                tokenizer.save(str(folder / "tokenizer.json"))
                artifacts["tokenizer"] = str(folder / "tokenizer.json")
        elif kind in TEXT_KINDS:
            raise ValueError(f"a {kind} model needs its tokenizer to be logged")
        if config_yaml is not None:
            (folder / "config.yaml").write_text(config_yaml)
            artifacts["config"] = str(folder / "config.yaml")
        requirements = [f"rnn-zoo=={zoo.__version__}", f"mlflow=={mlflow.__version__}"]
        # logged from code (MLflow runs the file at load time) rather than as a cloudpickle of the
        # object; the text model's signature comes from its predict's type hints, a window's from its
        # example
        options: dict[str, Any] = {"python_model": str(MODEL_CODE["text"])}
        if kind in TEXT_KINDS:
            options["input_example"] = list(input_example) if input_example is not None else ["an example"]
        else:
            model = SeriesPythonModel()
            model.load_context(type("Context", (), {"artifacts": artifacts})())
            if input_example is None:
                data = info.get("data") or {}
                input_example = series_example(
                    int(model.model.attr("num_features", 1)),
                    int(data.get("input_length") or 8),
                    data.get("feature_columns"),
                )
            output = pd.DataFrame(model.model.predict(input_example))
            options = {
                "python_model": str(MODEL_CODE["series"]),
                "input_example": input_example,
                "signature": infer_signature(input_example, output),
            }
        return mlflow.pyfunc.log_model(
            name=name, artifacts=artifacts, pip_requirements=requirements, **options
        )
