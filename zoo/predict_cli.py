"""``zoo predict MODEL "text" ...`` and ``zoo predict MODEL --input FILE``: a trained model on raw inputs.

``MODEL`` is a ``zoo fit`` checkpoint (a ``.ckpt`` file or its folder), a local MLflow model directory,
``runs:/<run_id>/model`` or ``models:/<name>@<alias>``. Inputs are texts given as arguments, ``-`` for one
per line of standard input, or ``--input`` a ``.txt``/``.csv``/``.jsonl`` file read lazily in batches
(a progress bar on stderr); a forecaster takes JSON windows (``[[x, ...], ...]``) or a ``.csv`` window.
Each input gives one JSON line, in order, on stdout or in ``--output``: the rows of
:meth:`zoo.tracking.predict.Predictor.rows`. The recipe form ``zoo predict -c recipe --ckpt_path best``
is LightningCLI's (:mod:`zoo.cli`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

from zoo.errors import CheckpointError, ZooConfigError

_TARGETS = (
    "a zoo fit checkpoint (.ckpt or its folder), a local MLflow model directory, runs:/<run_id>/model or "
    "models:/<name>@<alias>"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ZooConfigError(f"{message} (see `zoo predict --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``zoo predict MODEL ...``."""
    parser = _Parser(
        prog="zoo predict",
        description=(
            "Predict with a trained model on raw inputs; one JSON line per input. The recipe form, "
            "`zoo predict -c RECIPE --ckpt_path best --data.predict_files FILE`, runs through Lightning "
            "(`zoo predict -c RECIPE --help`)."
        ),
    )
    parser.add_argument("model", help=f"the model: {_TARGETS}")
    parser.add_argument(
        "texts", nargs="*", help="raw inputs (a forecaster: JSON windows); `-` reads one per line of stdin"
    )
    parser.add_argument("--input", help="a .txt (one input per line), .csv or .jsonl file, read in batches")
    parser.add_argument("--output", help="write the JSON lines here instead of stdout")
    parser.add_argument("--column", default=None, help="the input column of a .csv/.jsonl file (text)")
    parser.add_argument("--batch-size", type=int, default=64, help="inputs per batch (64)")
    parser.add_argument("--max-new-tokens", type=int, help="language models: tokens to generate (20)")
    parser.add_argument("--temperature", type=float, help="language models: sampling temperature (1.0)")
    parser.add_argument("--top-k", type=int, help="language models: sample from the k likeliest tokens")
    parser.add_argument("--seed", type=int, help="language models: sampling seed (0)")
    parser.add_argument("--tracking-uri", help="where runs:/ and models:/ are looked up")
    return parser


def load_predictor(target: str, tracking_uri: str | None = None) -> Any:
    """The :class:`~zoo.tracking.predict.Predictor` of ``target``; an error naming the fix otherwise."""
    from zoo.tracking.predict import Predictor

    path = Path(target)
    if path.exists():
        if path.is_dir() and (path / "MLmodel").is_file():
            return _from_uri(str(path), tracking_uri)
        return Predictor.from_checkpoint(path)
    if ":/" in target:
        return _from_uri(target, tracking_uri)
    raise ZooConfigError(f"model {target!r} is not a file, a folder or a model URI. Give {_TARGETS}.")


def _from_uri(uri: str, tracking_uri: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    from zoo.tracking.predict import Predictor
    from zoo.tracking.uri import resolve_tracking_uri

    store = resolve_tracking_uri(tracking_uri)
    try:
        return Predictor.from_model_uri(uri, tracking_uri=store)
    except (MlflowException, OSError) as err:
        reason = str(getattr(err, "message", err)).strip().splitlines()[0]
        raise ZooConfigError(
            f"model {uri} could not be loaded from {store}: {reason}. Check the run id or the model's name "
            "and alias (`mlflow ui` lists them), and point --tracking-uri or MLFLOW_TRACKING_URI at the "
            "store that holds it."
        ) from None
    except TypeError as err:  # a model that is not a zoo model
        raise CheckpointError(f"{err}. Give {_TARGETS}.") from None


def _options(ns: argparse.Namespace, kind: str) -> dict[str, Any]:
    given = {
        "max_new_tokens": ns.max_new_tokens,
        "temperature": ns.temperature,
        "top_k": ns.top_k,
        "seed": ns.seed,
    }
    options = {k: v for k, v in given.items() if v is not None}
    if options and kind != "language_model":
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise ZooConfigError(f"{flags} apply to language models only; this model is a {kind} model.")
    return options


def _inputs(ns: argparse.Namespace, windows: bool, progress: Any) -> Iterator[Any]:
    from zoo.data.predict_inputs import _json_window, iter_inputs

    if ns.input is not None:
        yield from iter_inputs(ns.input, ns.column, progress=progress, windows=windows)
        return
    if ns.texts == ["-"]:
        lines: Any = (line.rstrip("\r\n") for line in sys.stdin)
        where = "stdin"
    else:
        lines, where = ns.texts, "argument"
    for number, text in enumerate(lines, start=1):
        yield _json_window(f"{where} {number}", text) if windows else text


def _write(rows: list[dict[str, Any]], out: IO[str]) -> None:
    out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    out.flush()


def predict_main(args: list[str]) -> int:
    """Run ``zoo predict MODEL ...`` with ``args`` (after ``predict``); returns the exit status."""
    from zoo.data.predict_inputs import check_input_file
    from zoo.tracking.predict import PredictInputError

    ns = build_parser().parse_args(args)
    if (ns.input is None) == (not ns.texts):
        raise ZooConfigError(
            "give the inputs either as arguments (`-` reads stdin) or with --input FILE, not both or neither."
        )
    if ns.batch_size < 1:
        raise ZooConfigError(f"--batch-size must be at least 1, got {ns.batch_size}.")
    if ns.input is not None:
        check_input_file(ns.input)  # before the model is loaded
    predictor = load_predictor(ns.model, ns.tracking_uri)
    predictor.batch_size = ns.batch_size
    options = _options(ns, predictor.kind)
    bar = None
    if ns.input is not None:
        from tqdm import tqdm

        total = Path(ns.input).stat().st_size
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="predicting", file=sys.stderr)
    out = open(ns.output, "w", encoding="utf-8") if ns.output else sys.stdout  # noqa: SIM115
    count = 0
    try:
        inputs = _inputs(ns, predictor.kind == "forecasting", bar.update if bar else None)
        while chunk := list(itertools.islice(inputs, ns.batch_size)):
            try:
                rows = predictor.predict_rows(chunk, **options)
            except PredictInputError as err:
                raise ZooConfigError(f"input {count + 1}-{count + len(chunk)}: {err}") from None
            _write(rows, out)
            count += len(rows)
    finally:
        if bar is not None:
            bar.close()
        if out is not sys.stdout:
            out.close()
    if ns.output:
        print(f"zoo: wrote {count} predictions to {ns.output}", file=sys.stderr)
    return 0
