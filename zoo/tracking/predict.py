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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from zoo.data.encoding import DEFAULT_MAX_LENGTH

KINDS = ("classification", "tagging", "language_model", "forecasting")
TEXT_KINDS = ("classification", "tagging", "language_model")
BATCH_SIZE = 64
GENERATION_DEFAULTS: dict[str, Any] = {"max_new_tokens": 20, "temperature": 1.0, "top_k": None, "seed": 0}


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
    from zoo.errors import CheckpointError

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


@dataclass
class ZooModel:
    """A trained task with its tokenizer, taking raw inputs (see the module docstring for the formats).

    Attributes:
        task: the task ``LightningModule``, on CPU in eval mode.
        kind: ``classification``, ``tagging``, ``language_model`` or ``forecasting``.
        tokenizer: the ``tokenizers.Tokenizer`` the task was trained with (``None`` for series).
        info: the model's metadata (task class, kind, ``max_length``, data attributes, generation defaults).
        config: the resolved training config (YAML text) when the run had one.
    """

    task: Any
    kind: str
    tokenizer: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    config: str | None = None

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path,
        info: Mapping[str, Any] | str | Path,
        tokenizer: str | Path | None = None,
        config: str | Path | None = None,
    ) -> ZooModel:
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
        """Predict from raw inputs; ``options`` are generation settings for language models."""
        with torch.inference_mode():
            if self.kind == "forecasting":
                return self._forecast(inputs)
            texts = as_texts(inputs)
            if not texts:
                return []
            if self.kind == "classification":
                return self._classify(texts)
            if self.kind == "tagging":
                return self._tag(texts)
            return self._generate(texts, options)

    def _encode(self, texts: list[str]) -> list[Any]:
        return list(self.tokenizer.encode_batch(texts, add_special_tokens=False))

    def _run_batches(self, rows: list[list[int]], words: list[list[str]] | None = None) -> list[Any]:
        """``predict_step`` over padded chunks; returns the output of each chunk.

        ``words`` (tagging): each row's words, whose characters a tagger with a character encoder reads
        (``char_ids_of``).
        """
        pad_id = int(self.attr("pad_id", 0))
        char_ids_of = getattr(self.task, "char_ids_of", None) if words is not None else None
        outputs = []
        for start in range(0, len(rows), BATCH_SIZE):
            ids, lengths = _pad(rows[start : start + BATCH_SIZE], pad_id)
            batch = {"input_ids": ids, "lengths": lengths}
            chars = char_ids_of(words[start : start + BATCH_SIZE]) if char_ids_of and words else None
            if chars is not None:
                batch["char_ids"] = chars
            outputs.append(self.task.predict_step(batch, start // BATCH_SIZE))
        return outputs

    def _names(self, attr: str, count: int) -> list[str]:
        names = self.attr(attr)
        return [str(n) for n in names] if names else [str(i) for i in range(count)]

    def _classify(self, texts: list[str]) -> list[dict[str, Any]]:
        limit = self.max_length
        encodings = self._encode(texts)
        results: list[dict[str, Any]] = [
            {"label": None, "probabilities": {}, "num_tokens": 0, "truncated": False} for _ in texts
        ]
        keep = [i for i, e in enumerate(encodings) if e.ids]
        if not keep:
            return results
        probs_parts = []
        for output in self._run_batches([encodings[i].ids[:limit] for i in keep]):
            probs = _probabilities(output)
            if probs is None:
                raise TypeError(
                    f"{type(self.task).__name__}.predict_step returned {type(output).__name__}; expected "
                    "logits [B, C] or a dict with 'probabilities' or 'logits'"
                )
            probs_parts.append(probs)
        probs = torch.cat(probs_parts)
        names = self._names("label_names", probs.shape[-1])
        for row, i in enumerate(keep):
            p = probs[row].tolist()
            results[i] = {
                "label": names[int(probs[row].argmax())],
                "probabilities": dict(zip(names, p, strict=True)),
                "num_tokens": min(len(encodings[i].ids), limit),
                "truncated": len(encodings[i].ids) > limit,
            }
        return results

    def _tag(self, texts: list[str]) -> list[dict[str, Any]]:
        limit = self.max_length
        encodings = self._encode(texts)
        results: list[dict[str, Any]] = [{"words": [], "tags": [], "truncated": False} for _ in texts]
        keep = [i for i, e in enumerate(encodings) if e.ids]
        if not keep:
            return results
        tag_rows: list[list[int]] = []
        words = [[texts[i][s:e] for s, e in encodings[i].offsets[:limit]] for i in keep]
        for output in self._run_batches([encodings[i].ids[:limit] for i in keep], words):
            tags = _pick(output, ("tags", "preds", "predictions"))
            if isinstance(tags, list) or (isinstance(tags, Tensor) and not tags.is_floating_point()):
                tag_rows.extend(tags.tolist() if isinstance(tags, Tensor) else tags)
                continue
            probs = _probabilities(output)
            if probs is None:
                raise TypeError(
                    f"{type(self.task).__name__}.predict_step returned {type(output).__name__}; expected "
                    "tag logits [B, T, K], integer tags [B, T], or a dict with 'tags', 'probabilities' "
                    "or 'logits'"
                )
            tag_rows.extend(probs.argmax(-1).tolist())
        names = self._names("tag_names", int(self.attr("num_tags", 0)) or 1 + max(max(r) for r in tag_rows))
        for row, i in enumerate(keep):
            enc, text = encodings[i], texts[i]
            n = min(len(enc.ids), limit)
            results[i] = {
                "words": [text[s:e] for s, e in enc.offsets[:n]],
                "tags": [names[t] for t in tag_rows[row][:n]],
                "truncated": len(enc.ids) > limit,
            }
        return results

    def _generate(self, texts: list[str], options: Mapping[str, Any]) -> list[dict[str, Any]]:
        unknown = set(options) - set(GENERATION_DEFAULTS)
        if unknown:
            raise PredictInputError(
                f"unknown generation options {sorted(unknown)}; valid: {sorted(GENERATION_DEFAULTS)}"
            )
        settings = {**GENERATION_DEFAULTS, **(self.info.get("generation") or {}), **options}
        limit = self.max_length
        bos = self.attr("bos_id")
        eos = self.attr("eos_id")
        stop = {"eos_id": int(eos)} if eos is not None and _accepts(self.task.generate, "eos_id") else {}
        results = []
        for text in texts:
            ids = list(self.tokenizer.encode(text, add_special_tokens=False).ids)
            truncated = len(ids) > limit
            prompt = ids[-limit:] if ids else ([int(bos)] if bos is not None else [])
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
                {"prompt": text, "continuation": self.tokenizer.decode(new), "truncated": truncated}
            )
        return results

    def _forecast(self, window: Any) -> list[dict[str, Any]]:
        if isinstance(window, pd.DataFrame):
            values = window.to_numpy()
        elif isinstance(window, (list, tuple)) and len(window) == 0:
            return []
        else:
            values = np.asarray(window)
        if values.size == 0:
            return []
        num_features = int(self.attr("num_features", values.shape[-1] if values.ndim else 1))
        if values.ndim == 1 and num_features == 1:
            values = values.reshape(-1, 1)
        if values.ndim != 2 or values.shape[1] != num_features:
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
        values = values[-self.max_length :]
        # the data module standardised the inputs with train statistics: do the same to raw windows
        mean, std = self.attr("feature_mean"), self.attr("feature_std")
        if mean is not None and std is not None:
            values = (values - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
        output = self.task.predict_step({"inputs": torch.from_numpy(values).unsqueeze(0)}, 0)
        forecast = _pick(output, ("forecast", "forecasts", "predictions", "preds"))
        if not isinstance(forecast, Tensor):
            raise TypeError(
                f"{type(self.task).__name__}.predict_step returned {type(output).__name__}; expected a "
                "forecast tensor [B, horizon, targets] in original units or a dict with 'forecast'"
            )
        steps = forecast.detach().float()[0]
        steps = steps.reshape(steps.shape[0], -1)
        names = self.attr("target_columns") or [f"target_{i}" for i in range(steps.shape[1])]
        return [
            {"step": t + 1, **{str(n): float(v) for n, v in zip(names, row, strict=True)}}
            for t, row in enumerate(steps.tolist())
        ]
