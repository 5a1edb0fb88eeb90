"""Callbacks that fill an MLflow run: the resolved config, run facts and plots, and the pyfunc model.

Everything here writes on global rank 0 only, into the run of the trainer's MLflow logger, so a DDP fit
is one MLflow run.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from zoo.errors import ZooConfigError
from zoo.nonfinite import first_nonfinite
from zoo.tracking.predict import DEFAULT_MAX_LENGTH, INFO_FILE, TEXT_KINDS, class_path, task_kind
from zoo.tracking.provenance import TAG_CELL
from zoo.tracking.registry import Score

DATA_ATTRIBUTES = (
    "pad_id",
    "vocab_size",
    "bos_id",
    "eos_id",
    "num_classes",
    "label_names",
    "num_tags",
    "tag_names",
    "num_features",
    "num_targets",
    "horizon",
    "input_length",
    "target_mean",
    "target_std",
    "feature_mean",
    "feature_std",
    "feature_columns",
    "target_columns",
)


def find_mlflow_logger(trainer: L.Trainer) -> MLFlowLogger | None:
    """The trainer's first MLflow logger, or ``None``."""
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


def _require_logger(trainer: L.Trainer, who: str) -> MLFlowLogger:
    logger = find_mlflow_logger(trainer)
    if logger is None:
        raise ValueError(
            f"{who} needs an MLflow logger on the trainer; set "
            "`trainer.logger: zoo.tracking.ZooMLFlowLogger` "
            f"(loggers now: {[type(lg).__name__ for lg in trainer.loggers] or 'none'})"
        )
    return logger


def resolved_config(trainer: L.Trainer) -> str | None:
    """The YAML of the LightningCLI config that built this trainer, when the CLI built it."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, SaveConfigCallback):
            return str(callback.parser.dump(callback.config, skip_none=False))
    return None


class MLflowSaveConfigCallback(SaveConfigCallback):
    """Log the resolved LightningCLI config to the MLflow run as ``config.yaml`` (``config_test.yaml`` etc.
    for the other subcommands, which may log into the run of the fit).

    Lightning's own ``SaveConfigCallback`` writes into the logger's ``log_dir``, which an MLflow logger on
    a SQLite or HTTP store does not have (Lightning issue #16310). Pass this class to the CLI:
    ``LightningCLI(..., save_config_callback=MLflowSaveConfigCallback)``. With no MLflow logger but a
    logger that writes to a local directory (CSV, TensorBoard), it saves ``config.yaml`` there, as
    Lightning's callback does.
    """

    def __init__(
        self,
        parser: LightningArgumentParser,
        config: Any,
        config_filename: str = "config.yaml",
        overwrite: bool = False,
        multifile: bool = False,
        save_to_log_dir: bool = False,
    ) -> None:
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Pick the destination (the MLflow run, else the logger's directory), then save once."""
        if not self.already_saved:
            self.save_to_log_dir = (
                find_mlflow_logger(trainer) is None and bool(trainer.loggers) and trainer.log_dir is not None
            )
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Log the config text to the run (called by Lightning on rank 0 only)."""
        logger = find_mlflow_logger(trainer)
        if logger is None:
            return
        text = self.parser.dump(self.config, skip_none=False)
        # `zoo test` may log into the fit's run: keep the fit's config.yaml, add config_test.yaml
        name = self.config_filename
        stage_name = str(getattr(stage, "value", stage))  # Lightning passes a TrainerFn enum
        if stage_name != "fit":
            name = f"{Path(name).stem}_{stage_name}{Path(name).suffix}"
        logger.experiment.log_text(logger.run_id, text, name)
        set_provenance_tags(logger, stage_name, trainer.strategy.root_device)


def set_provenance_tags(logger: MLFlowLogger, stage: str, device: torch.device | None = None) -> None:
    """Tag the run with the command of ``stage``, the recipe, the commit and the machine.

    A fit resumed from a checkpoint into its run keeps the fit command and recipe that created the run.
    """
    from zoo.tracking.provenance import TAG_COMMAND, TAG_RECIPE, run_tags

    client, run_id = logger.experiment, logger.run_id
    existing = client.get_run(run_id).data.tags
    kept = (TAG_RECIPE, TAG_COMMAND.format(stage="fit"))
    for key, value in run_tags(stage, device).items():
        if key not in existing or key not in kept:
            client.set_tag(run_id, key, value)


def _first_batch(trainer: L.Trainer) -> Any:
    """One batch of validation (else training) data, for examples and plots; ``None`` if there is none."""
    for name in ("val_dataloaders", "train_dataloader"):
        loaders = getattr(trainer, name, None)
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        if loaders is None:
            continue
        try:
            return next(iter(loaders))
        except (StopIteration, TypeError):
            continue
    return None


def _first_ids(batch: Any) -> list[int] | None:
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        return None
    ids = batch["input_ids"][0]
    if "lengths" in batch:
        ids = ids[: int(batch["lengths"][0])]
    return [int(i) for i in ids.tolist()]


def _tokenizer_of(datamodule: Any) -> Any:
    if datamodule is None:
        return None
    tok = getattr(datamodule, "tokenizer", None)
    if tok is not None:
        return tok
    path = getattr(datamodule, "tokenizer_path", None)
    if path and Path(path).exists():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def data_attributes(datamodule: Any) -> dict[str, Any]:
    """The data module attributes a predictor needs (sizes, names, ids, normalisation), JSON-ready."""
    found = {}
    for name in DATA_ATTRIBUTES:
        value = _jsonable(getattr(datamodule, name, None)) if datamodule is not None else None
        if value is not None:
            found[name] = value
    return found


def predictor_info(
    pl_module: L.LightningModule,
    datamodule: Any,
    max_length: int = DEFAULT_MAX_LENGTH,
    generation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata a :class:`~zoo.tracking.predict.Predictor` is rebuilt from (``zoo_model.json``)."""
    import zoo

    return {
        "task_class": class_path(pl_module),
        "kind": task_kind(pl_module),
        "max_length": max_length,
        "cell": cell_name(pl_module),
        "data": data_attributes(datamodule),
        "generation": dict(generation or {}),
        "zoo_version": zoo.__version__,
    }


def write_predictor_files(
    folder: str | Path, info: Mapping[str, Any], tokenizer: Any, config_yaml: str | None
) -> None:
    """Write ``zoo_model.json``, ``tokenizer.json`` and ``config.yaml`` into a checkpoint folder, so that
    ``zoo.Predictor.from_checkpoint`` and ``zoo predict <checkpoint>`` need nothing else."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(str(folder / "tokenizer.json"))
    if config_yaml is not None:
        (folder / "config.yaml").write_text(config_yaml)


def cell_name(pl_module: L.LightningModule) -> str | None:
    """The registry name of the task's cell, from its ``encoder`` hyperparameter or module."""
    encoder = getattr(pl_module, "hparams", {}).get("encoder")
    if isinstance(encoder, Mapping) and "cell" in encoder:
        return str(encoder["cell"])
    cell = getattr(getattr(pl_module, "encoder", None), "cell", None)
    return cell if isinstance(cell, str) else None


class RunInfoCallback(Callback):
    """Log the cell, parameter count, task and tokenizer at fit start; plots at fit end.

    Args:
        log_plots: log learning curves (from the run's metric history) and, for GRU-family models, a
            gate heatmap of one validation example.
    """

    def __init__(self, log_plots: bool = True) -> None:
        self.log_plots = log_plots
        self._started = time.monotonic()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log run facts and the tokenizer."""
        self._started = time.monotonic()
        logger = find_mlflow_logger(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        client, run_id = logger.experiment, logger.run_id
        params = {
            "num_parameters": sum(p.numel() for p in pl_module.parameters()),
            "task": class_path(pl_module),
        }
        cell = cell_name(pl_module)
        if cell is not None:
            params["cell"] = cell
            client.set_tag(run_id, TAG_CELL, cell)
        for key, value in params.items():
            client.log_param(run_id, key, value)
        tokenizer = _tokenizer_of(trainer.datamodule)  # type: ignore[attr-defined]
        if tokenizer is not None:
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer.save(str(Path(tmp) / "tokenizer.json"))
                client.log_artifact(run_id, str(Path(tmp) / "tokenizer.json"))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the fit's wall time and the plots."""
        from zoo.tracking.provenance import FIT_SECONDS

        logger = find_mlflow_logger(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        seconds = time.monotonic() - self._started
        logger.experiment.log_metric(logger.run_id, FIT_SECONDS, seconds, step=trainer.global_step)
        # the store shows each metric's last value: the best one sits beside it
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.monitor and ckpt.best_model_score is not None:
            best, key = float(ckpt.best_model_score), f"best_{ckpt.monitor}"
            logger.experiment.log_metric(logger.run_id, key, best, step=trainer.global_step)
        if not self.log_plots:
            return
        from zoo.tracking.plots import gate_heatmap, learning_curves

        client, run_id = logger.experiment, logger.run_id
        with tempfile.TemporaryDirectory() as tmp:
            # the summaries logged once above are numbers, not curves
            keys = [
                k
                for k in client.get_run(run_id).data.metrics
                if k != FIT_SECONDS and not k.startswith("best_")
            ]
            history = {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}
            if learning_curves(history, Path(tmp) / "learning_curves.png") is not None:
                client.log_artifact(run_id, str(Path(tmp) / "learning_curves.png"), "plots")
            gates_png = self._gate_plot(trainer, pl_module, Path(tmp) / "gates.png", gate_heatmap)
            if gates_png is not None:
                client.log_artifact(run_id, str(gates_png), "plots")

    @staticmethod
    def _gate_plot(trainer: L.Trainer, pl_module: L.LightningModule, path: Path, plot: Any) -> Path | None:
        try:
            from zoo.tasks import gate_activations  # type: ignore[attr-defined]
        except ImportError:
            return None
        ids = _first_ids(_first_batch(trainer))
        tokenizer = _tokenizer_of(trainer.datamodule)  # type: ignore[attr-defined]
        if not ids or tokenizer is None:
            return None
        was_training = pl_module.training
        pl_module.eval()
        try:
            gates = gate_activations(pl_module, torch.tensor(ids, device=pl_module.device))
        except (ValueError, TypeError, NotImplementedError, AttributeError) as err:
            # cells without gates (rnn_tanh, lstm in some builds) have no heatmap to draw
            warnings.warn(f"gate heatmap skipped: {err}", stacklevel=2)
            return None
        finally:
            pl_module.train(was_training)
        if not gates or not any(gates):
            return None
        tokens = [tokenizer.id_to_token(i) or "?" for i in ids]
        return plot(gates, tokens, path)


def _nonfinite_problem(state_dict: Mapping[str, Any], score: Score | None) -> str | None:
    """Why a model must not be logged (NaN or inf in its weights or its monitored metric), else ``None``."""
    if score is not None and not score.finite:
        return f"its monitored {score.metric} is {score.value} (non-finite)"
    bad = first_nonfinite((k, v) for k, v in state_dict.items() if isinstance(v, torch.Tensor))
    return None if bad is None else f"its weights are non-finite ({bad})"


def check_tracking_args(log_model: bool, registered_model_name: str | None, max_length: int) -> None:
    """Raise :class:`~zoo.errors.ZooConfigError` for ``tracking`` settings that cannot work together."""
    if registered_model_name and not log_model:
        raise ZooConfigError(
            f"tracking.registered_model_name={registered_model_name!r} needs tracking.log_model=true: only a "
            "logged model can be registered. Set --tracking.log_model true, or "
            "--tracking.registered_model_name null to log nothing."
        )
    if max_length < 1:
        raise ZooConfigError(f"tracking.max_length must be at least 1, got {max_length}")


class LogModelCallback(Callback):
    """At the end of ``fit``, log the best checkpoint as a pyfunc model and register it.

    A fit that fails (e.g. on a non-finite loss) logs nothing: Lightning does not call ``on_fit_end`` then.
    A model whose weights or monitored metric are NaN or infinite is neither logged nor registered; the
    run's ``zoo.registration`` tag and a printed line say why.

    The model holds the best checkpoint (``trainer.checkpoint_callback.best_model_path``, else the last
    one, else the current weights), the tokenizer, the resolved config and the predictor's metadata, with a
    signature and an input example; ``zoo.load_model`` and ``mlflow.pyfunc.load_model`` load it.

    Args:
        log_model: log the model at the end of ``fit``.
        registered_model_name: register the logged model under this name (a new version per fit). The
            name is checked at fit start: one that holds another task is refused before training.
        alias: point this alias (``models:/<name>@<alias>``) at the new version when its monitored metric
            (the checkpoint callback's ``monitor``) is at least as good as the holder's
            (:func:`zoo.tracking.registry.register`); ``None`` sets none.
        force_alias: move the alias to the new version whatever the scores.
        max_length: tokens (time steps for series) a prediction keeps; longer inputs are truncated.
        generation: default ``max_new_tokens``, ``temperature``, ``top_k``, ``seed`` of language models.
        input_example: raw strings (or a window) for the signature; default: one validation example.
        log_run_info: also log the cell, parameter count, tokenizer and plots (see
            :class:`RunInfoCallback`).
        log_plots: draw the plots when ``log_run_info``.
    """

    def __init__(
        self,
        log_model: bool = False,
        registered_model_name: str | None = None,
        alias: str | None = "champion",
        force_alias: bool = False,
        max_length: int = DEFAULT_MAX_LENGTH,
        generation: dict[str, Any] | None = None,
        input_example: list[str] | None = None,
        log_run_info: bool = True,
        log_plots: bool = True,
    ) -> None:
        check_tracking_args(log_model, registered_model_name, max_length)
        self.log_model = log_model
        self.registered_model_name = registered_model_name
        self.alias = alias
        self.force_alias = force_alias
        self.max_length = max_length
        self.generation = dict(generation or {})
        self.input_example = input_example
        self.run_info = RunInfoCallback(log_plots=log_plots) if log_run_info else None
        self.model_info: Any = None
        self.model_version: Any = None
        self.registration: Any = None

    @property
    def state_key(self) -> str:
        """One state slot per configuration."""
        return self._generate_state_key(name=self.registered_model_name, alias=self.alias)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the predictor's files beside the checkpoints; check the registered name before training;
        log run facts."""
        folder = getattr(trainer.checkpoint_callback, "dirpath", None)
        if folder and trainer.is_global_zero:
            datamodule = getattr(trainer, "datamodule", None)
            write_predictor_files(
                folder,
                predictor_info(pl_module, datamodule, self.max_length, self.generation),
                _tokenizer_of(datamodule),
                resolved_config(trainer),
            )
        if self.run_info is not None:
            self.run_info.on_fit_start(trainer, pl_module)
        if not self.log_model:
            return
        from zoo.tracking.registry import RegistryNameConflict, check_registered_name

        problem = None
        if trainer.is_global_zero:
            logger = _require_logger(trainer, "LogModelCallback(log_model=True)")
            if self.registered_model_name:
                try:
                    check_registered_name(
                        logger.experiment, self.registered_model_name, class_path(pl_module)
                    )
                except RegistryNameConflict as err:
                    problem = str(err)
        # every rank stops, not only rank 0 (which alone can reach the registry)
        problem = trainer.strategy.broadcast(problem)
        if problem:
            raise RegistryNameConflict(problem)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Plots, then the model and its registration."""
        if self.run_info is not None:
            self.run_info.on_fit_end(trainer, pl_module)
        if not trainer.is_global_zero or not self.log_model:
            return
        logger = _require_logger(trainer, "LogModelCallback(log_model=True)")
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, score = self._checkpoint(trainer, pl_module, Path(tmp) / "model.ckpt")
            problem = _nonfinite_problem(torch.load(checkpoint, weights_only=True)["state_dict"], score)
            if problem is not None:
                self._refuse(logger, problem)
                return
            self._log(trainer, pl_module, logger, checkpoint, score)

    def _refuse(self, logger: MLFlowLogger, problem: str) -> None:
        from zoo.tracking.registry import DECISION_TAG

        message = f"Model not logged nor registered: {problem}"
        logger.experiment.set_tag(logger.run_id, DECISION_TAG, message)
        print(message, flush=True)

    def _checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, target: Path
    ) -> tuple[Path, Score | None]:
        """A slim checkpoint (state dict + hyperparameters) of the best, else last, else current model, and
        its monitored score (``None`` unless it is the best checkpoint of a monitored metric)."""
        source = None
        score = None
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "")
        for candidate in (best, getattr(callback, "last_model_path", "")):
            if candidate and Path(candidate).is_file():
                source = candidate
                break
        monitor = getattr(callback, "monitor", None)
        best_score = getattr(callback, "best_model_score", None)
        if source is not None and source == best and monitor and best_score is not None:
            score = Score(str(monitor), str(getattr(callback, "mode", "min")), float(best_score))
        if source is not None:
            full = torch.load(source, map_location="cpu", weights_only=True)
            slim = {
                k: full[k]
                for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version")
                if k in full
            }
        else:
            # not trainer.save_checkpoint: it is a collective call, and this runs on rank 0 only
            slim = {
                "state_dict": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
                "hyper_parameters": dict(pl_module.hparams),
                "pytorch-lightning_version": L.__version__,
            }
        torch.save(slim, target)
        return target, score

    def _log(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        logger: MLFlowLogger,
        ckpt: Path,
        score: Score | None = None,
    ) -> None:
        import mlflow

        from zoo.tracking.load import using_tracking_uri
        from zoo.tracking.pyfunc import log_pyfunc_model
        from zoo.tracking.registry import register

        datamodule = getattr(trainer, "datamodule", None)
        info = predictor_info(pl_module, datamodule, self.max_length, self.generation)
        kind = info["kind"]
        tokenizer = _tokenizer_of(datamodule)
        example = self.input_example or self._example(trainer, kind, tokenizer)
        client, run_id = logger.experiment, logger.run_id
        with using_tracking_uri(str(logger._tracking_uri)):
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                self.model_info = log_pyfunc_model(ckpt, info, tokenizer, resolved_config(trainer), example)
            else:
                with mlflow.start_run(run_id=run_id):
                    self.model_info = log_pyfunc_model(
                        ckpt, info, tokenizer, resolved_config(trainer), example
                    )
            if self.registered_model_name:
                self.registration = register(
                    client,
                    self.model_info.model_uri,
                    self.registered_model_name,
                    info["task_class"],
                    self.alias,
                    run_id=run_id,
                    score=score,
                    force_alias=self.force_alias,
                )
                self.model_version = self.registration.version
        where = (
            f"models:/{self.registered_model_name}@{self.alias}"
            if self.registration is not None and self.registration.alias_moved
            else f"models:/{self.registered_model_name}/{self.model_version.version}"
            if self.model_version is not None
            else f"runs:/{run_id}/model"
        )
        if self.registration is not None:
            print(self.registration.message, flush=True)
        print(f'Load it:   zoo.load_model("{where}")', flush=True)
        print(f"Serve it:  zoo serve {where}", flush=True)

    def _example(self, trainer: L.Trainer, kind: str, tokenizer: Any) -> Any:
        batch = _first_batch(trainer)
        if kind in TEXT_KINDS:
            ids = _first_ids(batch)
            if ids and tokenizer is not None:
                ids = ids[:8] if kind == "language_model" else ids[: self.max_length]
                text = tokenizer.decode(ids)
                if text.strip():
                    return [text]
            return None
        if isinstance(batch, Mapping) and "inputs" in batch:
            import pandas as pd

            window = (
                batch["inputs"][0].detach().cpu().double().numpy()
            )  # float64: float32 windows convert safely
            names = getattr(trainer.datamodule, "feature_columns", None)  # type: ignore[attr-defined]
            columns = list(names) if names else [f"feature_{i}" for i in range(window.shape[1])]
            return pd.DataFrame(window, columns=columns)
        return None
