"""Raw inputs in, what a user wants out: the predictor behind ``zoo.load_model`` and the pyfunc model.

The task module is rebuilt from its checkpoint through its concrete class (imported by class path) and
driven through the task API: ``predict_step`` for classification, tagging and forecasting, ``generate``
for language models. What each kind takes and returns (``max_length`` defaults to 512):

- classification: strings -> ``{"label", "probabilities": {label: p}, "num_tokens", "truncated"}``; a text
  longer than ``max_length`` tokens keeps its first ``max_length``; a text with no tokens gives
  ``label=None`` and empty probabilities.
- tagging: strings -> ``{"words", "tags", "truncated"}`` (one tag per word); only the first ``max_length``
  words are tagged and returned.
- language_model: prompts -> ``{"prompt", "continuation", "truncated"}``; the prompt keeps its last
  ``max_length`` tokens; an empty prompt starts from the BOS token, or continues with ``""`` without one.
- forecasting: one window (DataFrame or 2-D array, rows = time steps, columns = features) ->
  ``[{"step": 1, <target>: value, ...}, ...]`` for ``horizon`` steps in original units; the window keeps
  its last ``max_length`` rows.

An empty list (or empty DataFrame) gives ``[]`` for every kind.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from zoo.data.encoding import DEFAULT_MAX_LENGTH
from zoo.errors import CheckpointError

KINDS = ("classification", "tagging", "language_model", "forecasting")
TEXT_KINDS = ("classification", "tagging", "language_model")
BATCH_SIZE = 64
GENERATION_DEFAULTS: dict[str, Any] = {"max_new_tokens": 20, "temperature": 1.0, "top_k": None, "seed": 0}
#: The predictor's metadata, written by ``zoo fit`` beside its checkpoints and logged with MLflow models.
INFO_FILE = "zoo_model.json"


class PredictInputError(TypeError, ValueError):
    """Input a predictor cannot take (not strings, unknown options, a window of the wrong shape); the
    message names the input and what is accepted. ``zoo serve`` answers it with 400 and the message."""


def task_kind(module: Any) -> str:
    """The kind of a task module, from its ``task_kind`` attribute or the sizes in its hyperparameters."""
    explicit = getattr(module, "task_kind", None)
    if isinstance(explicit, str):
        if explicit not in KINDS:
            raise ValueError(f"task_kind {explicit!r} of {type(module).__name__} is not one of {KINDS}")
        return explicit
    hparams = getattr(module, "hparams", {})
    if "num_classes" in hparams:
        return "classification"
    if "num_tags" in hparams:
        return "tagging"
    if "horizon" in hparams:
        return "forecasting"
    if callable(getattr(module, "generate", None)):
        return "language_model"
    raise ValueError(
        f"cannot tell which task {type(module).__name__} is: expected a `num_classes`, `num_tags` or "
        "`horizon` hyperparameter, a `generate` method, or a `task_kind` attribute naming one of "
        f"{KINDS}"
    )


def class_path(obj: Any) -> str:
    """``module.QualName`` of ``obj``'s class, importable to rebuild it."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str) -> type:
    """Import a class from its ``module.QualName`` path, with an error that names what is missing."""
    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"cannot import {module_name!r} to rebuild the task {path!r}: install the package that provides "
            f"it in this environment ({err})"
        ) from err
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ImportError(f"{module_name!r} has no class {name!r} (needed to rebuild {path!r})")
    if not isinstance(obj, type):
        raise TypeError(f"{path!r} is not a class")
    return obj


def as_texts(inputs: Any) -> list[str]:
    """Normalise what a user passes (a string, list, Series, array or DataFrame) to a list of strings."""
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, pd.DataFrame):
        if inputs.shape[1] == 0 or len(inputs) == 0:
            return []
        if "text" in inputs.columns:
            values = inputs["text"].tolist()
        elif inputs.shape[1] == 1:
            values = inputs.iloc[:, 0].tolist()
        else:
            raise PredictInputError(
                "a DataFrame of texts needs a 'text' column or exactly one column; "
                f"got {list(inputs.columns)}"
            )
    elif isinstance(inputs, (pd.Series, np.ndarray)):
        values = np.asarray(inputs).ravel().tolist()
    elif isinstance(inputs, Sequence):
        values = list(inputs)
    else:
        raise PredictInputError(
            f"expected a list of strings or a DataFrame with a 'text' column, got {type(inputs)}"
        )
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise PredictInputError(
                f"input {i} is {type(value).__name__} ({value!r}); every input must be a string"
            )
    return [valid_unicode(v) for v in values]


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate (U+D800-U+DFFF, e.g. from JSON ``"\\ud800"``) replaced by U+FFFD.

    A Python string may hold surrogate code points that no UTF-8 text can; tokenizers refuse them. A
    surrogate pair written as two code points (``"\\ud83c\\udf6e"``) becomes the one character it encodes.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def model_vocab_size(task: Any) -> int | None:
    """Token ids the task embeds: its ``vocab_size`` hyperparameter, else its ``embedding``'s rows."""
    hparams = getattr(task, "hparams", {})
    size = hparams.get("vocab_size") if hasattr(hparams, "get") else None
    if isinstance(size, int):
        return size
    embedding = getattr(task, "embedding", None)
    return int(embedding.num_embeddings) if isinstance(embedding, torch.nn.Embedding) else None


def check_vocabulary(
    task: Any, tokenizer: Any, task_name: str = "the task", tokenizer_name: str = "the tokenizer"
) -> None:
    """Refuse a tokenizer whose id space (largest id + 1) differs from the vocabulary the task embeds.

    A larger tokenizer would index past the embedding; a smaller or different one maps words to rows
    trained for other words. Both mean the tokenizer is not the one the task was trained with.
    """
    from zoo.data.tokenizers import id_space_size

    expected = model_vocab_size(task)
    if expected is None:
        return
    found = id_space_size(tokenizer)
    if found != expected:
        raise CheckpointError(
            f"{tokenizer_name} has {found} token ids but {task_name} embeds a vocabulary of {expected}: "
            "they were not trained together. Use the tokenizer.json saved with this checkpoint (in its "
            "MLflow run or model directory)."
        )


def _pad(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, lengths


def _pick(output: Any, keys: Sequence[str]) -> Any:
    if isinstance(output, Mapping):
        for key in keys:
            if key in output:
                return output[key]
        return None
    return output


def _probabilities(output: Any) -> Tensor | None:
    """Class probabilities from a ``predict_step`` output: a dict with probabilities or logits, or logits."""
    if isinstance(output, Mapping):
        probs = _pick(output, ("probabilities", "probs", "proba"))
        if probs is not None:
            return torch.as_tensor(probs).float()
        output = _pick(output, ("logits", "scores"))
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        output = output[0]
    if not isinstance(output, Tensor) or not output.is_floating_point():
        return None
    output = output.detach().float()
    sums = output.sum(-1)
    if bool((output >= 0).all()) and torch.allclose(sums, torch.ones_like(sums), atol=1e-5):
        return output
    return output.softmax(-1)


def _accepts(function: Any, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def encode_texts(
    tokenizer: Any, texts: Sequence[str], max_length: int, pad_id: int, keep_end: bool = False
) -> dict[str, Any]:
    """A predict batch of raw texts, built the same way by :class:`Predictor` and by the data modules'
    ``predict_dataloader`` (so that both give the same rows).

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` with padding and truncation off.
        texts: the raw texts.
        max_length: tokens kept per text: the first ones, or the last ones with ``keep_end`` (a prompt).
        pad_id: the padding id.
        keep_end: keep the last ``max_length`` tokens (language-model prompts) instead of the first.

    Returns:
        ``input_ids`` Long[B, T] and ``lengths`` Long[B] (a text with no tokens is one pad token, so that
        every row can be run; its row is marked empty), and for formatting: ``texts``, ``token_ids`` (the
        kept ids), ``num_tokens`` (before the cut) and ``offsets`` (character spans of the kept tokens).
    """
    texts = [valid_unicode(t) for t in texts]
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    cut = (lambda seq: seq[-max_length:]) if keep_end else (lambda seq: seq[:max_length])
    token_ids = [list(cut(e.ids)) for e in encodings]
    batch: dict[str, Any] = {
        "texts": list(texts),
        "token_ids": token_ids,
        "num_tokens": [len(e.ids) for e in encodings],
        "offsets": [list(cut(e.offsets)) for e in encodings],
    }
    if token_ids:
        batch["input_ids"], batch["lengths"] = _pad([ids or [pad_id] for ids in token_ids], pad_id)
    return batch


def prepare_window(
    window: Any,
    num_features: int | None,
    max_length: int,
    mean: Any = None,
    std: Any = None,
    columns: Sequence[str] | None = None,
) -> np.ndarray:
    """A raw forecasting window (rows = time steps, columns = features) as the model reads it: float32,
    its last ``max_length`` rows, standardised with the training statistics ``mean``/``std``. A DataFrame
    that has all the training feature ``columns`` is read by their names, any other by position.

    Raises:
        PredictInputError: the window is not a table of numbers with ``num_features`` columns, or holds
            NaN or infinite values.
    """
    values = window.to_numpy() if isinstance(window, pd.DataFrame) else np.asarray(window)
    if isinstance(window, pd.DataFrame) and columns and set(columns) <= set(window.columns):
        values = window[list(columns)].to_numpy()  # by name when it has the training columns
    num_features = num_features or (values.shape[-1] if values.ndim else 1)
    if values.ndim == 1 and num_features == 1:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or values.shape[1] != num_features or values.shape[0] == 0:
        raise PredictInputError(
            f"a forecasting window is a table of time steps x {num_features} features; got shape "
            f"{values.shape}"
        )
    try:
        values = values.astype(np.float32)
    except (TypeError, ValueError) as err:
        raise PredictInputError(f"a forecasting window must hold numbers only ({err})") from err
    if not np.isfinite(values).all():
        raise PredictInputError("a forecasting window must not contain NaN or infinite values")
    values = values[-max_length:]
    # the data module standardised the inputs with train statistics: do the same to raw windows
    if mean is not None and std is not None:
        values = (values - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return values


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _find_checkpoint(folder: Path) -> Path:
    """The checkpoint to read from a checkpoint folder: its best one, else ``last.ckpt``."""
    from zoo.checkpoint import newest_checkpoint

    found = newest_checkpoint(folder, "best") or newest_checkpoint(folder, "last")
    if found is None:
        raise CheckpointError(
            f"{folder} holds no .ckpt file. Give a checkpoint written by `zoo fit` (its folder is printed "
            "at the end of the fit as 'Checkpoints: ...') or a model URI."
        )
    return found


@dataclass
class Predictor:
    """A trained task with its tokenizer: raw inputs in, JSON-ready predictions out.

    The one inference object of the zoo: ``zoo.load_model`` returns it, the MLflow pyfunc model wraps it,
    and ``zoo predict`` (both forms) formats its rows with it. Build it with :meth:`from_checkpoint` (a
    ``zoo fit`` checkpoint, no MLflow needed) or :meth:`from_model_uri` (a logged or registered model).

    Attributes:
        task: the task ``LightningModule``, on CPU in eval mode.
        kind: ``classification``, ``tagging``, ``language_model`` or ``forecasting``.
        tokenizer: the ``tokenizers.Tokenizer`` the task was trained with (``None`` for series).
        info: the model's metadata (task class, kind, ``max_length``, data attributes, generation defaults).
        config: the resolved training config (YAML text) when the run had one.
        batch_size: texts per ``predict_step`` call.

    Example:
        >>> folder = "runs/quickstart/checkpoints/version_0"
        >>> predictor = zoo.Predictor.from_checkpoint(folder)  # doctest: +SKIP
        >>> predictor.predict(["the chef stirred the pot"])  # doctest: +SKIP
        [{'label': 'italian', 'probabilities': {...}, 'num_tokens': 5, 'truncated': False}]
    """

    task: Any
    kind: str
    tokenizer: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    batch_size: int = BATCH_SIZE

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path,
        info: Mapping[str, Any] | str | Path,
        tokenizer: str | Path | None = None,
        config: str | Path | None = None,
    ) -> Predictor:
        """Rebuild from a checkpoint, the metadata (dict or JSON file), a ``tokenizer.json`` and a config."""
        from zoo.checkpoint import read_checkpoint

        meta = dict(info) if isinstance(info, Mapping) else json.loads(Path(info).read_text())
        task_cls: Any = import_class(meta["task_class"])
        # checked first (weights only, a Lightning checkpoint), so that a bad file gets a clear error;
        # Lightning then reads it again, weights only too
        read_checkpoint(checkpoint, need_hparams=True)
        task = task_cls.load_from_checkpoint(str(checkpoint), map_location="cpu", weights_only=True)
        task.eval()
        tok = None
        if tokenizer is not None and Path(tokenizer).exists():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tokenizer))
            check_vocabulary(task, tok, f"checkpoint {checkpoint}", f"tokenizer {tokenizer}")
        text = Path(config).read_text() if config is not None and Path(config).exists() else None
        return cls(task=task, kind=meta.get("kind") or task_kind(task), tokenizer=tok, info=meta, config=text)

    @classmethod
    def from_checkpoint(cls, path: str | Path, tokenizer: str | Path | None = None) -> Predictor:
        """Load a ``zoo fit`` checkpoint (a ``.ckpt`` file, or its folder: the best checkpoint there).

        ``zoo fit`` writes :data:`INFO_FILE` and ``tokenizer.json`` beside its checkpoints, so the folder
        is all a predictor needs.

        Args:
            path: a ``.ckpt`` file, or a checkpoint folder.
            tokenizer: a ``tokenizer.json`` to use instead of the one beside the checkpoint.

        Raises:
            CheckpointError: the file is not a readable zoo checkpoint, or the folder lacks the metadata.
        """
        file = Path(path)
        if file.is_dir():
            file = _find_checkpoint(file)
        folder = file.parent
        info = folder / INFO_FILE
        if not info.is_file():
            from zoo.checkpoint import read_checkpoint

            read_checkpoint(file, need_hparams=True)  # a file that is no checkpoint at all says so first
            raise CheckpointError(
                f"{folder} has no {INFO_FILE} beside checkpoint {file.name}, so it is not a zoo checkpoint "
                "folder (`zoo fit` writes the file with the checkpoints). Train with `zoo fit`, or load "
                "the model from MLflow: zoo.Predictor.from_model_uri('runs:/<run_id>/model')."
            )
        tok = Path(tokenizer) if tokenizer is not None else folder / "tokenizer.json"
        if tokenizer is not None and not tok.is_file():
            raise CheckpointError(f"tokenizer file not found: {tok}. Give the path of a tokenizer.json.")
        return cls.from_files(file, info, tokenizer=tok, config=folder / "config.yaml")

    @classmethod
    def from_model_uri(cls, uri: str, tracking_uri: str | None = None) -> Predictor:
        """Load a model logged to MLflow: ``runs:/<run_id>/model``, ``models:/<name>@<alias>`` (or
        ``models:/<name>/<version>``), or a local model directory. See :func:`zoo.load_model`."""
        from zoo.tracking.load import load_model

        return load_model(uri, tracking_uri=tracking_uri)

    @classmethod
    def from_module(cls, task: Any, datamodule: Any, max_length: int | None = None) -> Predictor:
        """A predictor of a task being trained or evaluated, with its data module's tokenizer and sizes
        (what ``zoo predict -c recipe`` formats its rows with)."""
        from zoo.tracking.callbacks import data_attributes

        info = {
            "task_class": class_path(task),
            "kind": task_kind(task),
            "max_length": max_length or getattr(datamodule, "max_length", None) or DEFAULT_MAX_LENGTH,
            "data": data_attributes(datamodule),
        }
        return cls(task, str(info["kind"]), getattr(datamodule, "tokenizer", None), info)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; expected one of {KINDS}")
        if self.kind in TEXT_KINDS and self.tokenizer is None:
            raise ValueError(f"a {self.kind} model needs its tokenizer (tokenizer.json) to read raw text")
        if self.tokenizer is not None:
            from tokenizers import Tokenizer

            check_vocabulary(self.task, self.tokenizer)

            # a copy without the saved padding/truncation settings: this class pads and truncates itself
            self.tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
            self.tokenizer.no_padding()
            self.tokenizer.no_truncation()

    @property
    def max_length(self) -> int:
        """Tokens (or time steps) kept per input; longer inputs are truncated as documented per kind."""
        return int(self.info.get("max_length") or DEFAULT_MAX_LENGTH)

    def attr(self, name: str, default: Any = None) -> Any:
        """A data attribute saved with the model (``label_names``, ``pad_id``...), else the task's hparam."""
        data = self.info.get("data") or {}
        if data.get(name) is not None:
            return data[name]
        hparams = getattr(self.task, "hparams", {})
        value = hparams.get(name) if hasattr(hparams, "get") else None
        return default if value is None else value

    def predict(self, inputs: Any, **options: Any) -> list[dict[str, Any]]:
        """Predict from raw inputs (see the module docstring for each kind's input and output).

        Args:
            inputs: texts (a string, list, Series or one-column DataFrame), or one forecasting window.
            **options: language models only: ``max_new_tokens``, ``temperature``, ``top_k``, ``seed``.
        """
        if self.kind == "forecasting":
            if options:
                raise PredictInputError(f"a forecaster takes no options; got {sorted(options)}")
            empty_list = isinstance(inputs, (list, tuple)) and len(inputs) == 0
            if empty_list or (isinstance(inputs, (pd.DataFrame, np.ndarray)) and inputs.size == 0):
                return []
            forecast: list[dict[str, Any]] = self.predict_rows([inputs])[0]["forecast"]
            return forecast
        return self.predict_rows(as_texts(inputs), **options)

    def predict_rows(self, inputs: Sequence[Any], **options: Any) -> list[dict[str, Any]]:
        """One JSON-ready row per input: texts, or windows for a forecaster (``{"forecast": [...]}``)."""
        rows: list[dict[str, Any]] = []
        with torch.inference_mode():
            # windows may differ in length: a forecaster runs them one at a time
            size = 1 if self.kind == "forecasting" else self.batch_size
            for chunk in _chunks(inputs, size):
                batch = self.encode(chunk)
                output = None if self.kind == "language_model" else self.task.predict_step(batch, 0)
                rows.extend(self.rows(batch, output, **options))
        return rows

    def encode(self, inputs: Sequence[Any]) -> dict[str, Any]:
        """A predict batch of raw inputs: :func:`encode_texts`, or stacked :func:`prepare_window` windows."""
        if self.kind != "forecasting":
            return encode_texts(
                self.tokenizer,
                list(inputs),
                self.max_length,
                int(self.attr("pad_id", 0)),
                keep_end=self.kind == "language_model",
            )
        windows = [
            prepare_window(
                w,
                self.attr("num_features"),
                self.max_length,
                self.attr("feature_mean"),
                self.attr("feature_std"),
                self.attr("feature_columns"),
            )
            for w in inputs
        ]
        return {"inputs": torch.from_numpy(np.stack(windows))}

    def rows(self, batch: Mapping[str, Any], output: Any, **options: Any) -> list[dict[str, Any]]:
        """Format one predict batch (from :meth:`encode` or a data module's ``predict_dataloader``) and the
        task's ``predict_step`` output on it as JSON-ready rows. Language models generate here instead."""
        if self.kind == "classification":
            return self._classify(batch, output)
        if self.kind == "tagging":
            return self._tag(batch, output)
        if self.kind == "language_model":
            return self._generate(batch, options)
        return [{"forecast": steps} for steps in self._forecast(output)]

    def _names(self, attr: str, count: int) -> list[str]:
        names = self.attr(attr)
        return [str(n) for n in names] if names else [str(i) for i in range(count)]

    def _classify(self, batch: Mapping[str, Any], output: Any) -> list[dict[str, Any]]:
        probs = _probabilities(output)
        if probs is None:
            raise TypeError(
                f"{type(self.task).__name__}.predict_step returned {type(output).__name__}; expected "
                "logits [B, C] or a dict with 'probabilities' or 'logits'"
            )
        probs = probs.cpu()
        names = self._names("label_names", probs.shape[-1])
        limit = self.max_length
        results: list[dict[str, Any]] = []
        for row, (ids, count) in enumerate(zip(batch["token_ids"], batch["num_tokens"], strict=True)):
            if not ids:
                results.append({"label": None, "probabilities": {}, "num_tokens": 0, "truncated": False})
                continue
            results.append(
                {
                    "label": names[int(probs[row].argmax())],
                    "probabilities": dict(zip(names, probs[row].tolist(), strict=True)),
                    "num_tokens": len(ids),
                    "truncated": count > limit,
                }
            )
        return results

    def _tag(self, batch: Mapping[str, Any], output: Any) -> list[dict[str, Any]]:
        tags = _pick(output, ("tags", "preds", "predictions"))
        if isinstance(tags, list) or (isinstance(tags, Tensor) and not tags.is_floating_point()):
            tag_rows = tags.tolist() if isinstance(tags, Tensor) else tags
        else:
            probs = _probabilities(output)
            if probs is None:
                raise TypeError(
                    f"{type(self.task).__name__}.predict_step returned {type(output).__name__}; expected "
                    "tag logits [B, T, K], integer tags [B, T], or a dict with 'tags', 'probabilities' "
                    "or 'logits'"
                )
            tag_rows = probs.argmax(-1).tolist()
        names = self._names(
            "tag_names",
            int(self.attr("num_tags", 0)) or 1 + max((max(r, default=0) for r in tag_rows), default=0),
        )
        results: list[dict[str, Any]] = []
        for row, text in enumerate(batch["texts"]):
            ids, spans = batch["token_ids"][row], batch["offsets"][row]
            results.append(
                {
                    "words": [text[s:e] for s, e in spans] if ids else [],
                    "tags": [names[int(t)] for t in tag_rows[row][: len(ids)]] if ids else [],
                    "truncated": batch["num_tokens"][row] > self.max_length,
                }
            )
        return results

    def _generate(self, batch: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict[str, Any]]:
        unknown = set(options) - set(GENERATION_DEFAULTS)
        if unknown:
            raise PredictInputError(
                f"unknown generation options {sorted(unknown)}; valid: {sorted(GENERATION_DEFAULTS)}"
            )
        settings = {**GENERATION_DEFAULTS, **(self.info.get("generation") or {}), **options}
        bos = self.attr("bos_id")
        eos = self.attr("eos_id")
        stop = {"eos_id": int(eos)} if eos is not None and _accepts(self.task.generate, "eos_id") else {}
        results = []
        with torch.inference_mode():
            for text, ids, count in zip(batch["texts"], batch["token_ids"], batch["num_tokens"], strict=True):
                prompt = list(ids) if ids else ([int(bos)] if bos is not None else [])
                new: list[int] = []
                if prompt:
                    out = self.task.generate(
                        prompt,
                        max_new_tokens=int(settings["max_new_tokens"]),
                        temperature=float(settings["temperature"]),
                        top_k=None if settings["top_k"] is None else int(settings["top_k"]),
                        seed=None if settings["seed"] is None else int(settings["seed"]),
                        **stop,
                    )
                    new = [int(t) for t in (out.tolist() if isinstance(out, Tensor) else out)]
                    if len(new) > int(settings["max_new_tokens"]) and new[: len(prompt)] == prompt:
                        new = new[len(prompt) :]  # a generate() that returns the prompt too
                results.append(
                    {
                        "prompt": text,
                        "continuation": self.tokenizer.decode(new),
                        "truncated": count > self.max_length,
                    }
                )
        return results

    def _forecast(self, output: Any) -> list[list[dict[str, Any]]]:
        forecast = _pick(output, ("forecast", "forecasts", "predictions", "preds"))
        if not isinstance(forecast, Tensor):
            raise TypeError(
                f"{type(self.task).__name__}.predict_step returned {type(output).__name__}; expected a "
                "forecast tensor [B, horizon, targets] in original units or a dict with 'forecast'"
            )
        values = forecast.detach().float().cpu()
        values = values.reshape(values.shape[0], values.shape[1], -1)
        names = self.attr("target_columns") or [f"target_{i}" for i in range(values.shape[2])]
        return [
            [
                {"step": t + 1, **{str(n): float(v) for n, v in zip(names, row, strict=True)}}
                for t, row in enumerate(window.tolist())
            ]
            for window in values
        ]
