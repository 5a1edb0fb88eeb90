"""Measured results of the recipes: export finished MLflow runs to JSON, render docs/results.md from them.

    python benchmarks/results.py export --tracking-uri sqlite:///runs/results/mlflow.db
    python benchmarks/results.py render

``export`` reads every finished run of the store that ``zoo fit -c RECIPE`` tagged with its recipe and
that ``zoo test`` then evaluated (a ``test_*`` metric), and writes one small JSON per recipe and cell to
``docs/results/`` (the latest run wins). ``render`` writes ``docs/results.md`` and its PNG plots from those
JSON files alone, byte for byte the same on every run: nothing in the page is typed by hand except the
published anchors below, each with its source. ``render`` also writes the same numbers into the recipe
table of README.md and docs/recipes.md (between ``<!-- results:start -->`` and ``<!-- results:end -->``)
and into the ``# Measured:`` line of every recipe's header; ``check`` lists where those disagree with the
JSON files (a test runs it). ``benchmarks/run_queue.sh`` runs recipes and exports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "results"
MARKDOWN = ROOT / "docs" / "results.md"
#: Files whose recipe table ``render`` writes between the markers.
TABLE_FILES = (ROOT / "README.md", ROOT / "docs" / "recipes.md")
RECIPES_ROOT = ROOT / "zoo" / "recipes"
BLOCK_START, BLOCK_END = "<!-- results:start -->", "<!-- results:end -->"
MEASURED = "# Measured:"
DEFAULT_URI = f"sqlite:///{ROOT / 'runs' / 'results' / 'mlflow.db'}"
SCHEMA = 1


@dataclass(frozen=True)
class Anchor:
    """A published (or agreed) number a recipe is judged against.

    Attributes:
        metric: the test metric compared (``test_ppl``).
        value: the number.
        goal: ``"max"`` when higher is better, ``"min"`` when lower is.
        source: where the number comes from.
        validation: the same source's validation number, drawn on the curves when given.
    """

    metric: str
    value: float
    goal: str
    source: str
    validation: float | None = None


ZAREMBA = (
    "Zaremba et al. 2014, Recurrent Neural Network Regularization (arXiv:1409.2329), Table 1: "
    "non-regularized LSTM, 120.7 valid / 114.5 test"
)
ANCHORS: dict[str, Anchor] = {
    "lm/ptb-lstm": Anchor("test_ppl", 114.5, "min", ZAREMBA, validation=120.7),
    "lm/ptb-gru": Anchor("test_ppl", 114.5, "min", ZAREMBA + " (the LSTM's number, same budget)", 120.7),
    "classify/sst2-gru": Anchor(
        "test_acc",
        0.85,
        "max",
        "bar for a BiRNN without pretrained vectors on the 872 GLUE dev sentences (stretch 0.87, "
        "the BiLSTM baselines of Wang et al. 2018, GLUE)",
    ),
    "tag/ewt-lstm": Anchor("test_acc", 0.93, "max", "bar for UPOS from words alone (0.95 with characters)"),
    "tag/ewt-gru": Anchor("test_acc", 0.93, "max", "bar for UPOS from words alone (0.95 with characters)"),
    "tag/ewt-gru-char": Anchor("test_acc", 0.95, "max", "bar for UPOS with a character-level word encoder"),
    "memory/adding": Anchor(
        "test_rmse",
        0.1,
        "min",
        "solved: MSE under 0.01 (RMSE 0.1); always answering 1 gives MSE 0.167 "
        "(Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016)",
    ),
    "memory/copy": Anchor(
        "test_acc",
        0.99,
        "max",
        "solved: the recalled symbols reproduced (Hochreiter & Schmidhuber 1997); "
        "the accuracy counts the recalled symbols only (score_blanks: false)",
    ),
}

#: Settings copied from a run's resolved config into its summary (dotted paths).
CONFIG_KEYS = (
    "seed_everything",
    "trainer.max_epochs",
    "trainer.gradient_clip_val",
    "trainer.precision",
    "model.class_path",
    "model.init_args.encoder",
    "model.init_args.embedding_dim",
    "model.init_args.dropout",
    "model.init_args.pooling",
    "model.init_args.tie_weights",
    "model.init_args.learning_rate",
    "model.init_args.weight_decay",
    "data.class_path",
    "data.init_args.path",
    "data.init_args.data_files",
    "data.init_args.batch_size",
    "data.init_args.seq_len",
    "data.init_args.sequence_length",
    "data.init_args.input_length",
    "data.init_args.horizon",
    "optimizer",
    "lr_scheduler",
    "checkpoint.monitor",
    "checkpoint.mode",
)


# -- export ---------------------------------------------------------------------------------------------
def _dig(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def config_essentials(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`CONFIG_KEYS` a config sets (``None`` left out), flat and dotted."""
    found = {key: _dig(config, key) for key in CONFIG_KEYS}
    return {k: v for k, v in found.items() if v is not None}


#: Period (in rows) of the seasonal-naive forecast per recipe: the sunspot cycle is about 11 years.
SEASONS = {"forecast/sunspots-gru": 132}


def series_baselines(config: Mapping[str, Any], season: int | None) -> dict[str, dict[str, float]] | None:
    """MAE and RMSE of the naive forecasts on a time-series recipe's validation and test windows.

    ``last_value`` repeats the last observed value over the horizon; ``seasonal_naive`` (when ``season``
    is given, see :data:`SEASONS`) forecasts each step with the value one season earlier. Both are computed
    on the same windows and units as the model's metrics. ``None`` for data modules other than
    ``zoo.data.TimeSeriesData``.
    """
    data = config.get("data") or {}
    if not str(data.get("class_path", "")).endswith("TimeSeriesData"):
        return None
    import numpy as np

    from zoo.data import TimeSeriesData

    dm = TimeSeriesData(**data.get("init_args", {}))
    series = dm.targets.double().numpy() * np.array(dm.target_std) + np.array(dm.target_mean)
    out: dict[str, dict[str, float]] = {}
    for split, prefix in (("validation", "val"), ("test", "test")):
        times = dm.windows(split).times.numpy()
        steps = times[:, None] + np.arange(dm.horizon)[None, :]  # [windows, horizon]
        truth = series[steps]
        guesses = {"last_value": series[times - 1][:, None, :]}
        if season is not None and int(steps.min()) >= season:
            guesses["seasonal_naive"] = series[steps - season]
        for name, guess in guesses.items():
            out.setdefault(name, {})
            error = np.broadcast_to(guess, truth.shape) - truth
            out[name][f"{prefix}_mae"] = float(np.abs(error).mean())
            out[name][f"{prefix}_rmse"] = float(np.sqrt((error**2).mean()))
    return out


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _monitor(config: Mapping[str, Any], run: Any) -> tuple[str, str]:
    monitor, mode = _dig(config, "checkpoint.monitor"), _dig(config, "checkpoint.mode")
    if monitor is None:
        from zoo.cli import main_metric

        task = run.data.params.get("task", "")
        module, _, name = task.rpartition(".")
        try:
            monitor, mode = main_metric(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError, ValueError):
            monitor, mode = "val_loss", "min"
    return str(monitor), str(mode or "min")


def summarise_run(client: Any, run: Any) -> dict[str, Any]:
    """The summary of one finished, tested run (see the module docstring)."""
    from zoo.tracking.provenance import FIT_SECONDS, TAG_COMMIT, TAG_MACHINE, TAG_RECIPE

    run_id = run.info.run_id
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", tmp)).read_text())
    monitor, mode = _monitor(config, run)
    curve = _history(client, run_id, monitor)
    if not curve:
        raise ValueError(f"run {run_id} has no {monitor} history")
    best_step, _ = (min if mode == "min" else max)(curve, key=lambda sv: sv[1])
    epoch_at = dict(_history(client, run_id, "epoch"))
    validation = {}
    for key in sorted(k for k in metrics if k.startswith("val_")):
        at_best = dict(_history(client, run_id, key)).get(best_step)
        if at_best is not None:
            validation[key] = at_best
    epochs = [int(epoch_at[step]) + 1 for step, _ in curve if step in epoch_at]
    return {
        "schema": SCHEMA,
        "recipe": tags[TAG_RECIPE],
        "cell": params.get("cell"),
        "task": params.get("task"),
        "parameters": int(params["num_parameters"]) if "num_parameters" in params else None,
        "config": config_essentials(config),
        "monitor": monitor,
        "mode": mode,
        "test": {k: v for k, v in sorted(metrics.items()) if k.startswith("test_")},
        "validation": validation,
        "best_epoch": int(epoch_at[best_step]) + 1 if best_step in epoch_at else None,
        "epochs": max(epochs) if epochs else None,
        "curve": [[epoch, value] for epoch, (_, value) in zip(epochs, curve, strict=False)],
        "wall_time_s": round(sum(v for _, v in _history(client, run_id, FIT_SECONDS)), 1),
        "machine": tags.get(TAG_MACHINE),
        "git_commit": tags.get(TAG_COMMIT),
        "command": {
            stage: tags[f"zoo.command.{stage}"] for stage in ("fit", "test") if f"zoo.command.{stage}" in tags
        },
        "finished": _utc_date(run.info.end_time),
        "mlflow_run_id": run_id,
        "baselines": series_baselines(config, SEASONS.get(tags[TAG_RECIPE])),
    }


def _utc_date(millis: int | None) -> str | None:
    if millis is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(millis / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def result_name(recipe: str, cell: str | None) -> str:
    """The file name of a recipe's (and cell's) summary: ``lm--ptb-lstm--lstm.json``."""
    return f"{recipe.replace('/', '--')}--{cell or 'custom'}.json"


def export(tracking_uri: str, out: Path, recipes: Iterable[str] = ()) -> list[Path]:
    """Write the summary of every finished, tested, recipe-tagged run in ``tracking_uri`` to ``out``.

    Of several runs of one recipe and cell, the one that finished last wins.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    from zoo.tracking.provenance import TAG_RECIPE

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    wanted = set(recipes)
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{TAG_RECIPE}` != ''", order_by=["attributes.end_time ASC"]
    )
    chosen: dict[str, Any] = {}
    for run in runs:
        recipe = run.data.tags.get(TAG_RECIPE, "")
        if run.info.status != "FINISHED" or (wanted and recipe not in wanted):
            continue
        if not any(k.startswith("test_") for k in run.data.metrics):
            print(f"skipped {recipe} run {run.info.run_id}: not tested yet (zoo test --ckpt_path best)")
            continue
        chosen[result_name(recipe, run.data.params.get("cell"))] = run
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, run in sorted(chosen.items()):
        path = out / name
        path.write_text(json.dumps(summarise_run(client, run), indent=2, sort_keys=True) + "\n")
        written.append(path)
        print(f"wrote {path}")
    return written


# -- render ---------------------------------------------------------------------------------------------
def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every summary in ``folder``, sorted by recipe then cell."""
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return sorted(found, key=lambda r: (r["recipe"], r.get("cell") or ""))


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _metric(result: Mapping[str, Any], split: str) -> str:
    anchor = ANCHORS.get(result["recipe"])
    base = (anchor.metric if anchor else "test_" + result["monitor"].removeprefix("val_")).split("_", 1)[1]
    key = f"{'test' if split == 'test' else 'val'}_{base}"
    value = result[split].get(key)
    return "-" if value is None else f"{key.split('_', 1)[1]} {_num(value)}"


def _anchor(result: Mapping[str, Any]) -> str:
    anchor = ANCHORS.get(result["recipe"])
    baselines = result.get("baselines")
    if anchor is None and baselines:
        got = result["test"].get("test_mae")
        parts = [
            f"{name.replace('_', ' ')} {_num(b.get('test_mae'))}" for name, b in sorted(baselines.items())
        ]
        beaten = got is not None and all(got < b.get("test_mae", float("inf")) for b in baselines.values())
        verdict = " (met)" if beaten else " (not met)"
        return f"mae below {', '.join(parts)}{verdict}: naive forecasts of the same test windows"
    if anchor is None:
        return "-"
    got = result["test"].get(anchor.metric)
    verdict = ""
    if got is not None:
        met = got <= anchor.value if anchor.goal == "min" else got >= anchor.value
        verdict = " (met)" if met else " (not met)"
    sign = "<=" if anchor.goal == "min" else ">="
    return f"{sign} {_num(anchor.value)}{verdict}: {anchor.source}"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(float(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _plot_groups(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        if result.get("curve"):
            key = f"{result['recipe'].split('/')[0]}-{result['monitor']}"
            groups.setdefault(key, []).append(result)
    return groups


def plot_curves(name: str, results: list[dict[str, Any]], path: Path) -> None:
    """One PNG: the monitored validation metric per epoch, a line per recipe and cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    anchors = {}
    for result in results:
        epochs = [e for e, _ in result["curve"]]
        values = [v for _, v in result["curve"]]
        ax.plot(epochs, values, marker="o", markersize=3, label=f"{result['recipe']} ({result['cell']})")
        anchor = ANCHORS.get(result["recipe"])
        if anchor is not None and anchor.validation is not None:
            anchors[anchor.validation] = anchor.source.split(",")[0]
    for value, source in sorted(anchors.items()):
        ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=f"{source}: {_num(value)}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(results[0]["monitor"])
    ax.set_title(f"{name}: validation per epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    # no Software / date entries: the same results give the same bytes
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def render(results_dir: Path, markdown: Path) -> list[Path]:
    """Write ``markdown`` and its plots (into ``results_dir``) from the JSON summaries alone."""
    from zoo.cli import list_recipes

    results = load_results(results_dir)
    written = [markdown]
    rel = os.path.relpath(results_dir, markdown.parent)
    lines = [
        "# Results",
        "",
        "Generated by `python benchmarks/results.py render` from the run summaries in `docs/results/`",
        "(`python benchmarks/results.py export` writes them from the MLflow store of the runs;",
        "`benchmarks/run_queue.sh` runs the recipes). Do not edit by hand.",
        "",
        "Each row: a recipe run to its end, then `zoo test` on the checkpoint that was best on validation.",
        "`test` is the test split; `validation` is the validation split at that checkpoint. The wall time",
        "is that of `fit` from its start (training and validation, not data preparation), summed over the",
        "pieces of a resumed run, on a machine whose cores other jobs may have shared.",
        "",
        "Run recipes, resumably, and export: `nohup benchmarks/run_queue.sh sunspots adding copy sst2",
        "ptb-lstm ptb-gru > runs/results/queue.log 2>&1 &` (from the repository root, with the corpora in",
        "`../shared/data`; `NAME@CELL` swaps the cell).",
        "",
        "| recipe | cell | parameters | test | validation | anchor | best epoch / epochs | wall time "
        "| machine | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        epochs = f"{_num(r.get('best_epoch'))} / {_num(r.get('epochs'))}"
        row = [
            f"`{r['recipe']}`",
            r.get("cell") or "-",
            _num(r.get("parameters")),
            _metric(r, "test"),
            _metric(r, "validation"),
            _anchor(r),
            epochs,
            _duration(r.get("wall_time_s")),
            r.get("machine") or "-",
            f"`{r['command']['fit']}`" if "fit" in r.get("command", {}) else "-",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    done = {r["recipe"] for r in results}
    missing = [name for name in list_recipes() if name not in done]
    lines += ["", "Not yet run to the end: " + (", ".join(f"`{m}`" for m in missing) or "none") + "."]
    groups = _plot_groups(results)
    if groups:
        lines += ["", "## Validation curves", ""]
    for name, members in sorted(groups.items()):
        png = results_dir / f"{name}.png"
        plot_curves(name, members, png)
        written.append(png)
        lines.append(f"![{name}]({rel}/{png.name})")
        lines.append("")
    lines += ["## Runs", ""]
    for r in results:
        lines += [f"### `{r['recipe']}` ({r.get('cell') or '-'})", ""]
        for stage, command in sorted(r.get("command", {}).items()):
            lines += [f"{stage}:", "", "```bash", command, "```", ""]
        lines.append(f"- all test metrics: {_metrics_text(r['test'])}")
        lines.append(f"- all validation metrics at the best epoch: {_metrics_text(r['validation'])}")
        lines.append(f"- commit `{r.get('git_commit') or '-'}`, finished {r.get('finished') or '-'}")
        lines.append(f"- settings: `{json.dumps(r.get('config', {}), sort_keys=True)}`")
        lines.append("")
    markdown.write_text("\n".join(lines).rstrip("\n") + "\n")
    return written


# -- the README's table and the recipe headers ---------------------------------------------------------
def _recipe_cell(config: Mapping[str, Any]) -> str:
    """``2 x lstm 200``, ``bi-gru 128``: the recipe's encoder as its table names it."""
    encoder = _dig(config, "model.init_args.encoder") or {}
    if not isinstance(encoder, Mapping) or "cell" not in encoder:
        return "-"
    layers = int(encoder.get("num_layers") or 1)
    direction = "bi-" if encoder.get("bidirectional") else ""
    text = f"{direction}{encoder['cell']} {encoder.get('hidden_size', '')}"
    chars = _dig(config, "model.init_args.char_encoder")
    if isinstance(chars, Mapping) and "cell" in chars:
        text += f" + chars {chars['cell']} {chars.get('hidden_size', '')}"
    return f"{layers} x {text}" if layers > 1 else text


def _own_result(name: str, cell: str | None, results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The result of recipe ``name`` run with its own cell (other cells' runs are in docs/results.md)."""
    for result in results:
        if result["recipe"] == name and result.get("cell") == cell:
            return result
    return None


def _machine(result: Mapping[str, Any]) -> str:
    return str(result.get("machine") or "-").split(";")[0]


def measured_text(result: Mapping[str, Any] | None) -> str:
    """One line of measured numbers for a recipe's header, or ``not yet measured``."""
    if result is None:
        return "not yet measured by benchmarks/run_queue.sh (docs/results.md lists the recipes it ran)."
    return (
        f"test {_metric(result, 'test')}, validation {_metric(result, 'validation')} (best of "
        f"{_num(result.get('epochs'))} epochs at epoch {_num(result.get('best_epoch'))}); fit "
        f"{_duration(result.get('wall_time_s'))} on {_machine(result)}. docs/results.md has the command."
    )


def recipe_table(results: list[dict[str, Any]]) -> str:
    """The recipe table of README.md and docs/recipes.md, every number from the results."""
    from zoo.cli import list_recipes, recipe_purpose

    lines = [
        "| recipe | what it trains | cell | measured (test; validation) | fit wall time |",
        "|---|---|---|---|---|",
    ]
    for name, path in list_recipes().items():
        config = yaml.safe_load(path.read_text())
        encoder = _dig(config, "model.init_args.encoder") or {}
        result = _own_result(name, encoder.get("cell") if isinstance(encoder, Mapping) else None, results)
        if result is None:
            measured, wall = "not yet measured", "-"
        else:
            measured = f"{_metric(result, 'test')}; {_metric(result, 'validation')}"
            epochs = _num(result.get("epochs"))
            wall = f"{_duration(result.get('wall_time_s'))} ({epochs} epochs, {_machine(result)})"
        row = [f"`{name}`", recipe_purpose(path).rstrip("."), _recipe_cell(config), measured, wall]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def with_block(text: str, block: str, where: Path) -> str:
    """``text`` with what lies between the results markers replaced by ``block``."""
    start, end = text.find(BLOCK_START), text.find(BLOCK_END)
    if start < 0 or end < start:
        raise ValueError(f"{where} lacks the markers {BLOCK_START} ... {BLOCK_END} around its recipe table")
    return text[: start + len(BLOCK_START)] + "\n" + block + "\n" + text[end:]


def with_measured_line(text: str, line: str, where: Path) -> str:
    """A recipe's text with its ``# Measured:`` line set to ``line`` (put before ``# Swap the cell:``)."""
    lines = text.split("\n")
    for i, old in enumerate(lines):
        if old.startswith(MEASURED):
            lines[i] = line
            return "\n".join(lines)
    for i, old in enumerate(lines):
        if old.startswith("# Swap the cell:"):
            return "\n".join([*lines[:i], line, *lines[i:]])
    raise ValueError(f"{where}: the header has no '# Swap the cell:' line to put '{MEASURED}' before")


def expected_files(
    results_dir: Path, table_files: Iterable[Path] = TABLE_FILES, recipes_root: Path = RECIPES_ROOT
) -> dict[Path, str]:
    """What the tables' files and the recipes should hold, path -> text, from the JSON summaries."""
    from zoo.cli import list_recipes

    results = load_results(results_dir)
    table = recipe_table(results)
    out = {path: with_block(path.read_text(), table, path) for path in table_files}
    for name in list_recipes():
        path = recipes_root / f"{name}.yaml"
        config = yaml.safe_load(path.read_text())
        encoder = _dig(config, "model.init_args.encoder") or {}
        result = _own_result(name, encoder.get("cell") if isinstance(encoder, Mapping) else None, results)
        out[path] = with_measured_line(path.read_text(), f"{MEASURED} {measured_text(result)}", path)
    return out


def check(
    results_dir: Path = RESULTS_DIR,
    table_files: Iterable[Path] = TABLE_FILES,
    recipes_root: Path = RECIPES_ROOT,
) -> list[Path]:
    """The files whose measured numbers disagree with the JSON summaries (``render`` rewrites them)."""
    wanted = expected_files(results_dir, table_files, recipes_root)
    return [path for path, text in wanted.items() if path.read_text() != text]


def _metrics_text(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in sorted(metrics.items())) or "-"


def main(argv: list[str] | None = None) -> int:
    """``export`` or ``render`` (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="MLflow store -> docs/results/*.json")
    exp.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
    exp.add_argument("--out", type=Path, default=RESULTS_DIR)
    exp.add_argument("--recipe", action="append", default=[], help="only this recipe (repeatable)")
    ren = sub.add_parser("render", help="docs/results/*.json -> docs/results.md and plots")
    ren.add_argument("--results", type=Path, default=RESULTS_DIR)
    ren.add_argument("--markdown", type=Path, default=None, help="default: results.md beside --results")
    chk = sub.add_parser("check", help="exit 1 when README.md, docs/recipes.md or a recipe header is stale")
    chk.add_argument("--results", type=Path, default=RESULTS_DIR)
    ns = parser.parse_args(argv)
    if ns.command == "export":
        export(ns.tracking_uri, ns.out, ns.recipe)
        return 0
    if ns.command == "check":
        stale = check(ns.results)
        for path in stale:
            print(f"{path}: its numbers disagree with {ns.results}; run benchmarks/results.py render")
        return 1 if stale else 0
    markdown = ns.markdown or ns.results.parent / "results.md"
    for path in render(ns.results, markdown):
        print(f"wrote {path}")
    if ns.results.resolve() == RESULTS_DIR.resolve():
        for path, text in expected_files(ns.results).items():
            if path.read_text() != text:
                path.write_text(text)
                print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
