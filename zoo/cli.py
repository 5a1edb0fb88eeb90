"""The ``zoo`` command: LightningCLI for every task and data module, plus ``zoo cells``, ``zoo recipes`` and
``zoo serve``.

``zoo fit -c recipe.yaml`` trains any ``LightningModule`` on any ``LightningDataModule`` named by
``class_path`` (the zoo's tasks and data modules, or a user's own). The sizes the data decides (vocabulary,
classes, tags, features, normalisation) are linked into the model when the classes are instantiated, so a
recipe never types them; see :data:`LINKED_SIZES` and ``docs/cli.md``. Every run is tracked in MLflow by
default (:func:`default_logger`; ``docs/tracking.md``).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
from collections.abc import Callable
from importlib import import_module, resources
from pathlib import Path
from typing import Any

import yaml
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from zoo._malloc import tune_malloc_for_training
from zoo.cli_errors import ZooArgumentParser, check_encoder_keys, data_module_error_in
from zoo.errors import DataValidationError, ZooConfigError, ZooError
from zoo.nonfinite import NonFiniteGuard
from zoo.prediction_writer import JsonLinesWriter
from zoo.quiet import quiet_output
from zoo.tracking.callbacks import LogModelCallback, MLflowSaveConfigCallback, check_tracking_args
from zoo.tracking.logger import ZooMLFlowLogger
from zoo.tracking.provenance import name_configured_run
from zoo.tracking.uri import TrackingServerUnreachable

#: Attributes a data module may expose after ``__init__`` that are passed to the model's parameter of the
#: same name. A link applies only when the data module has the attribute and the model takes the parameter.
LINKED_SIZES = (
    "vocab_size",
    "num_classes",
    "label_names",
    "num_tags",
    "tag_names",
    "char_vocab",
    "max_word_chars",
    "pad_id",
    "num_features",
    "num_targets",
    "horizon",
    "target_mean",
    "target_std",
)

#: The metric the checkpoint callback keeps the best of, per task class name, when the recipe sets no
#: ``checkpoint.monitor``. A model class may declare its own with a ``main_metric = ("val_x", "max")``
#: class attribute. Anything else falls back to ``("val_loss", "min")``.
MAIN_METRICS: dict[str, tuple[str, str]] = {
    "SequenceClassifier": ("val_acc", "max"),
    "TokenTagger": ("val_acc", "max"),
    "LanguageModel": ("val_ppl", "min"),
    "Forecaster": ("val_mae", "min"),
}

DEFAULT_SEED = 1234

#: File in a checkpoint directory that names the MLflow run which wrote the checkpoints there, so that
#: ``zoo validate/test/predict --ckpt_path ...`` logs into that run.
RUN_FILE = "mlflow_run.json"

#: Values of a ``data_files`` entry that are not local paths and so are not checked for existence.
_REMOTE_MARKERS = ("://", "*", "?", "[")
_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt", ".conllu", ".arrow")


def main_metric(model_class: type) -> tuple[str, str]:
    """The ``(metric, mode)`` the checkpoint callback monitors by default for ``model_class``."""
    declared = getattr(model_class, "main_metric", None)
    if isinstance(declared, str):
        return declared, "min" if declared.endswith(("loss", "ppl", "mae", "rmse")) else "max"
    if isinstance(declared, tuple | list) and len(declared) == 2:
        return str(declared[0]), str(declared[1])
    for cls in model_class.__mro__:
        if cls.__name__ in MAIN_METRICS:
            return MAIN_METRICS[cls.__name__]
    return "val_loss", "min"


class ZooCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps the best checkpoint and a ``last.ckpt`` that is truly the last.

    Defaults differ from Lightning's: ``save_last=True`` and ``save_top_k=1``; ``monitor=None`` means the
    model's main validation metric (:func:`main_metric`), resolved when training starts; ``dirpath=None``
    means ``<log_dir>/checkpoints`` for a logger that writes to a local directory (CSV, TensorBoard), else
    ``<default_root_dir>/checkpoints/version_N`` (the next free N, reserved by creating the folder, so two
    runs started together never share one). The directory never depends on a logger's experiment or run
    id, which would scatter checkpoints over the working directory. When fitting with an MLflow logger,
    rank 0 writes :data:`RUN_FILE` there (run id, tracking URI), which links the checkpoints to their run.

    ``last.ckpt`` is written at the end of every epoch (Lightning writes it only when it also saves a
    top-k checkpoint) and every ``last_every_n_train_steps`` optimizer steps, so a crash loses at most that
    many steps. Every file is written atomically: to a temporary file in the same folder, flushed to disk,
    then renamed over the old one, so a kill never leaves a truncated checkpoint. The checkpoint also holds
    the global RNG states (torch, numpy, Python), restored when training resumes from it.

    Args:
        last_every_n_train_steps: write ``last.ckpt`` every this many optimizer steps (0: at epoch ends
            only).
        **kwargs: as for Lightning's ``ModelCheckpoint``.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        mode: str | None = None,
        save_last: bool = True,
        save_top_k: int = 1,
        last_every_n_train_steps: int = 200,
        **kwargs: Any,
    ) -> None:
        if last_every_n_train_steps < 0:
            raise ZooConfigError(
                f"checkpoint.last_every_n_train_steps must be >= 0, got {last_every_n_train_steps}; "
                "0 writes last.ckpt at epoch ends only."
            )
        self._auto_monitor = monitor is None
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode or "min",
            save_last=save_last,
            save_top_k=save_top_k,
            **kwargs,
        )
        self._mode_given = mode is not None
        self.last_every_n_train_steps = last_every_n_train_steps
        self._last_written_step: int | None = None
        #: set by the CLI for ``zoo fit --ckpt_path``: the folder holds the checkpoints it resumes from
        self.resuming = False
        self._rng_to_restore: dict[str, Any] | None = None

    def _use_monitor(self, monitor: str, mode: str) -> None:
        import torch

        self.monitor = monitor
        self.mode = mode
        self.kth_value = torch.tensor(torch.inf if mode == "min" else -torch.inf)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._auto_monitor and self.monitor is None:
            monitor, mode = main_metric(type(pl_module))
            self._use_monitor(monitor, self.mode if self._mode_given else mode)
        if self.dirpath is None:
            self.dirpath = trainer.strategy.broadcast(default_checkpoint_dir(trainer))
        super().setup(trainer, pl_module, stage)
        logger = _mlflow_logger(trainer)
        if stage == "fit" and logger is not None and trainer.is_global_zero and self.dirpath:
            Path(self.dirpath).mkdir(parents=True, exist_ok=True)
            record = {"run_id": logger.run_id, "tracking_uri": str(logger._tracking_uri)}
            (Path(self.dirpath) / RUN_FILE).write_text(json.dumps(record) + "\n")

    def _ModelCheckpoint__warn_if_dir_not_empty(self, dirpath: Any) -> None:
        # Lightning's check (name-mangled) warns that the folder holds checkpoints: a resumed fit
        # continues in its checkpoint's folder on purpose (resume_in_checkpoint_dir)
        if not self.resuming:
            super()._ModelCheckpoint__warn_if_dir_not_empty(dirpath)  # type: ignore[misc]

    # -- when last.ckpt is written ---------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self.last_every_n_train_steps
        if not self.save_last or every < 1 or trainer.global_step % every or trainer.global_step == 0:
            return
        if (
            getattr(trainer, "fast_dev_run", False)
            or trainer.sanity_checking
            or self._last_written_step == trainer.global_step
        ):
            return
        # a step checkpoint must not count as this step's save, or the epoch-end top-k check would skip
        saved = self._last_global_step_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = saved

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        here = not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(
            trainer
        )
        self._save_last_after(super().on_train_epoch_end, here, trainer, pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        here = not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(
            trainer
        )
        self._save_last_after(super().on_validation_end, here, trainer, pl_module)

    def _save_last_after(
        self, hook: Callable[[Trainer, LightningModule], None], here: bool, trainer: Trainer, pl: Any
    ) -> None:
        """Run Lightning's epoch-end hook, then write last.ckpt unless it did (only with a top-k save)."""
        self._last_written_step = None  # a step checkpoint at this step lacks the epoch's end
        hook(trainer, pl)
        if here and self.save_last and self._last_written_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Any]) -> None:
        self._last_written_step = trainer.global_step
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """On SIGTERM, write ``last.ckpt`` before the process ends; on SIGTERM or Ctrl-C the MLflow run ends
        ``KILLED`` rather than ``FAILED``.

        Lightning raises its ``SIGTERMException`` between two training batches, so the state is whole there;
        a Ctrl-C can land inside a step, so it writes nothing (the last periodic checkpoint stands).
        """
        super().on_exception(trainer, pl_module, exception)
        if not isinstance(exception, SIGTERMException | KeyboardInterrupt):
            return
        for logger in trainer.loggers:
            if isinstance(logger, ZooMLFlowLogger):
                logger.interrupted = True
        if (
            isinstance(exception, SIGTERMException)
            and self.save_last
            and trainer.state.fn == "fit"
            and not trainer.sanity_checking
            and self._last_written_step != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        if trainer.is_global_zero and self.last_model_path:
            cause = "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C"
            print(
                f"\nzoo: stopped by {cause} at step {trainer.global_step}; the last checkpoint is "
                f"{self.last_model_path}. Continue the run with the same command and --ckpt_path last.",
                file=sys.stderr,
                flush=True,
            )

    # -- how a file is written -------------------------------------------------------------------------
    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        from weakref import proxy

        atomic_save_checkpoint(trainer, filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    # -- what a checkpoint holds -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self._rng_to_restore = state.pop("rng", None)
        saved_dir = state.get("dirpath")
        if saved_dir and self.dirpath and os.path.realpath(saved_dir) == os.path.realpath(self.dirpath):
            state["dirpath"] = self.dirpath  # the same folder, written differently: keep the best score
        super().load_state_dict(state)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["metric_states"] = metric_states(pl_module)

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Only rank 0's states are saved: loaded on every rank, a DDP sync would count them once per rank
        if trainer.world_size == 1:
            set_metric_states(pl_module, checkpoint.get("metric_states", {}))

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after the checkpoint is loaded and before the first data is drawn: the resumed run continues
        # the random streams where the checkpoint left them (seed_everything re-seeded them at start-up)
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None


def metric_states(module: Any) -> dict[str, dict[str, Any]]:
    """The accumulated state of every torchmetrics ``Metric`` in ``module``, by module name.

    Torchmetrics keeps it out of the module's ``state_dict``; without it, a metric accumulated over an
    epoch (``train_acc`` logged ``on_epoch``) would, after a mid-epoch resume, cover only the batches
    trained since.
    """
    from torchmetrics import Metric

    found = {}
    for name, metric in module.named_modules():
        if isinstance(metric, Metric):
            state = {k: getattr(metric, k) for k in metric._defaults}
            found[name] = {"state": state, "updates": int(metric._update_count)}
    return found


def set_metric_states(module: Any, states: dict[str, dict[str, Any]]) -> None:
    """Restore what :func:`metric_states` returned (metrics it does not name are left alone)."""
    from torchmetrics import Metric

    for name, metric in module.named_modules():
        saved = states.get(name)
        if isinstance(metric, Metric) and saved is not None:
            for key, value in saved["state"].items():
                setattr(metric, key, value)
            metric._update_count = saved["updates"]
            metric._computed = None


def rng_states() -> dict[str, Any]:
    """The global torch, numpy and Python RNG states, as tensors and lists (loadable with
    ``torch.load(weights_only=True)``)."""
    import random

    import numpy as np
    import torch

    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": int(version), "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    import random

    import numpy as np
    import torch

    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    npy = states["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


def atomic_save_checkpoint(trainer: Trainer, filepath: str, weights_only: bool = False) -> None:
    """``trainer.save_checkpoint(filepath)`` that never leaves a partial file at ``filepath``.

    A local file is written under a temporary name in the same folder, flushed to disk (``fsync``) and
    renamed over ``filepath`` (``os.replace`` is atomic within a file system); the folder is synced too,
    so the rename survives a power cut. Lightning's own save writes a temporary file in the system's
    temporary folder and moves it, which is a copy, not a rename, when that folder is on another disk.
    Remote paths (``s3://`` ...) are left to Lightning.
    """
    if "://" in str(filepath):
        trainer.save_checkpoint(filepath, weights_only)
        return
    folder, name = os.path.split(os.path.abspath(filepath))
    partial = os.path.join(folder, f".{name}.{os.getpid()}.partial")
    trainer.save_checkpoint(partial, weights_only)
    if not trainer.is_global_zero:
        return
    with open(partial, "rb") as written:
        os.fsync(written.fileno())
    os.replace(partial, filepath)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _mlflow_logger(trainer: Trainer) -> MLFlowLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


def default_checkpoint_dir(trainer: Trainer) -> str:
    """``<log_dir>/checkpoints`` when the first logger writes to a local directory, else a fresh
    ``<default_root_dir>/checkpoints/version_N`` (absolute).

    The folder is reserved by creating it (on rank 0; other ranks get rank 0's through a broadcast):
    ``mkdir`` fails when another process got there first, and the next N is tried, so two runs started
    together in one folder never write into the same ``version_N``.
    """
    log_dir = getattr(trainer.logger, "log_dir", None) if trainer.loggers else None
    if isinstance(log_dir, str) and "://" not in log_dir:
        return os.path.join(log_dir, "checkpoints")
    if not trainer.is_global_zero:
        return ""
    return reserve_version_dir(Path(trainer.default_root_dir) / "checkpoints")


def reserve_version_dir(root: Path) -> str:
    """Create and return the first ``root/version_N`` that does not exist yet (absolute path)."""
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        candidate = root.resolve() / f"version_{n}"
        try:
            candidate.mkdir()
        except FileExistsError:
            n += 1
            continue
        return str(candidate)


def default_logger(
    save_dir: str,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    skip_logged_steps: bool = False,
    run_name: str | None = None,
) -> Logger:
    """The logger a run gets when the recipe sets none: MLflow (``trainer.logger: false`` turns it off).

    Args:
        save_dir: the run's ``default_root_dir`` (unused by MLflow, kept for other default loggers).
        run_id: log into this existing MLflow run (``validate``/``test``/``predict`` of a tracked fit, or a
            resumed fit).
        tracking_uri: the store of ``run_id``; default: ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///<cwd>/mlflow.db``.
        skip_logged_steps: do not log a metric again at a step the run already has (a resumed fit).
        run_name: the new run's name (see :func:`~zoo.tracking.provenance.name_configured_run`).
    """
    return ZooMLFlowLogger(
        run_id=run_id, tracking_uri=tracking_uri, skip_logged_steps=skip_logged_steps, run_name=run_name
    )


def fit_run_of(ckpt_path: Any) -> dict[str, str] | None:
    """The MLflow run (``run_id``, ``tracking_uri``) that wrote checkpoint ``ckpt_path``, if recorded."""
    if not isinstance(ckpt_path, str | os.PathLike):
        return None
    record = Path(ckpt_path).parent / RUN_FILE
    if not record.is_file():
        return None
    try:
        found = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("run_id") else None


class FitSummary(Callback):
    """At the end of ``fit`` (rank 0), print the best monitored score, the checkpoints and the MLflow run."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        lines = []
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_score is not None:
            lines.append(f"Best {ckpt.monitor}: {float(ckpt.best_model_score):.4f}")
        if isinstance(ckpt, ModelCheckpoint) and ckpt.dirpath:
            lines.append(
                f"Checkpoints: {ckpt.dirpath} (best: {Path(ckpt.best_model_path).name or '-'}, last)"
            )
        logger = _mlflow_logger(trainer)
        if logger is not None and logger._initialized:
            uri = str(logger._tracking_uri)
            lines.append(f"MLflow run {logger.run_id} in {uri}")
            lines.append(f"  browse:  mlflow ui --backend-store-uri {uri}")
        if lines:
            print("\n" + "\n".join(lines), flush=True)


class ZooCLI(LightningCLI):
    """LightningCLI in subclass mode for models and data, with linked sizes and the zoo's defaults.

    Args:
        args: command-line arguments (``sys.argv[1:]`` when ``None``).
        print_linked: parse, build the data module, print the resolved config with the linked sizes
            filled in, and stop (what ``--print_config`` does through :func:`main`).
        **kwargs: passed to :class:`~lightning.pytorch.cli.LightningCLI`.
    """

    def __init__(self, args: list[str] | None = None, print_linked: bool = False, **kwargs: Any) -> None:
        self._print_linked = print_linked
        self._provided: dict[str, Any] = {}
        self._fit_run: dict[str, str] | None = None
        self._checked_ckpt: str | None = None
        self._run_name: str | None = None
        kwargs.setdefault("seed_everything_default", DEFAULT_SEED)
        kwargs.setdefault("parser_class", ZooArgumentParser)  # one-line errors with the valid keys
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # Lightning's SaveConfigCallback asserts on an MLflow logger (no log_dir, Lightning #16310); this
        # one logs config.yaml to the MLflow run, or writes it to the log_dir of a file logger.
        kwargs.setdefault("save_config_callback", MLflowSaveConfigCallback)
        kwargs.setdefault(
            "parser_kwargs",
            {
                "prog": "zoo",
                "description": (
                    "Train and evaluate rnn-zoo models from YAML recipes, tracked in MLflow. Also: `zoo "
                    "cells` lists the registered cells, `zoo recipes` the bundled recipes (`zoo recipes "
                    "path NAME` gives a path for -c), `zoo serve MODEL_URI` serves a logged model, `zoo "
                    "predict MODEL TEXT...` (or `--input FILE`) predicts with a checkpoint or model URI. "
                    "`zoo --verbose ...` shows the warnings and log lines that the zoo hides by default."
                ),
            },
        )
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            **kwargs,
        )

    # -- parser ---------------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # jsonargparse (>= 4.28) skips a link whose source attribute the chosen data class lacks and one
        # whose target parameter the chosen model class lacks, so one link per size serves every
        # task/data pair. The compute function records what the data provided, for the checks below and
        # for --print_config; it runs just before the model is built.
        for name in LINKED_SIZES:
            parser.link_arguments(
                f"data.{name}",
                f"model.init_args.{name}",
                compute_fn=self._recorder(name),
                apply_on="instantiate",
            )
        parser.add_lightning_class_args(ZooCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LogModelCallback, "tracking")
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(JsonLinesWriter, "prediction")

    def _recorder(self, name: str) -> Callable[[Any], Any]:
        def linked(value: Any) -> Any:
            self._provided[name] = value
            return value

        linked.__name__ = f"linked_{name}"
        return linked

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._parse_arguments(parser, args)
        # LightningCLI reads --ckpt_path's hyperparameters right after parsing: check the file first
        subcommand = self.config.get("subcommand")
        if subcommand:
            self._checked_ckpt = check_checkpoint_path(self.config[subcommand])

    def _parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        if not self._print_linked:
            super().parse_arguments(parser, args)
            return
        # Parse strictly; if that fails (e.g. `zoo fit --print_config` with no model yet), let
        # jsonargparse's own --print_config print the template, as it does without a config.
        try:
            parser.exit_on_error = False
            self.config = parser.parse_args(args)
        except Exception:
            parser.exit_on_error = True
            given = sys.argv[1:] if args is None else list(args)
            super().parse_arguments(parser, [*given, "--print_config"])
        finally:
            parser.exit_on_error = True

    # -- checks before anything is built --------------------------------------------------------------
    def _sub_config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._sub_config()
        parser = self._parser(self.subcommand)
        try:
            check_encoder_cell(config)
            check_tracking_config(config)
            resolve_data_files(config)
            if self.subcommand in ("fit", "validate", "test", "predict"):
                resolve_checkpoint_alias(config)
                self._fit_run = fit_run_of(config.get("ckpt_path"))
                resuming = self.subcommand == "fit" and config.get("ckpt_path") is not None
                if config.get("ckpt_path") is not None:
                    resume_in_checkpoint_dir(config)
                if self._fit_run is not None:
                    _resume_configured_logger(config, self._fit_run, skip_logged_steps=resuming)
                elif self.subcommand == "fit":
                    self._run_name = name_configured_run(config)
        except ZooConfigError as err:
            parser.error(str(err))
        check_checkpoint_path(config, already=self._checked_ckpt)  # an alias resolved just above
        self._explicit = explicit_linked_values(config)
        if config.trainer.get("fast_dev_run"):
            # Lightning swaps every logger for a dummy in a fast_dev_run: do not build one (nor its store)
            config.trainer.logger = False

    # -- instantiation --------------------------------------------------------------------------------
    def instantiate_classes(self) -> None:
        config = self._sub_config()
        if self._print_linked:
            self._print_resolved_config(config)
            raise SystemExit(0)
        try:
            super().instantiate_classes()
        except Exception as err:
            # jsonargparse wraps an error of the data module's __init__ in a "Union subtypes" report. When
            # the data module failed, no size was linked and a missing-sizes hint would mislead; when it
            # was built, sizes it lacks are the likelier cause of the model's error.
            cause = zoo_error_in(err)
            data_failed = isinstance(cause, DataValidationError) or not self._provided
            if cause is not None and data_failed:
                raise cause from None
            data_error = data_module_error_in(err)
            if data_error is not None:
                raise data_error from err
            hint = missing_sizes_hint(config, self._provided)
            if hint:
                raise ZooConfigError(f"{hint}\n(the model failed with: {err})") from err
            if cause is not None:
                raise cause from None
            raise
        check_conflicts(self._explicit, self._provided)
        ckpt_path = self._sub_config().get("ckpt_path")
        if isinstance(ckpt_path, str | os.PathLike) and Path(ckpt_path).is_file():
            from zoo.checkpoint import check_weights_fit

            check_weights_fit(self.model, ckpt_path)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        logger = trainer_config.get("logger")
        if (logger is None or logger is True) and "logger" not in kwargs:
            run = self._fit_run or {}
            kwargs["logger"] = default_logger(
                trainer_config.get("default_root_dir") or os.getcwd(),
                run_id=run.get("run_id"),
                tracking_uri=run.get("tracking_uri"),
                skip_logged_steps=self.subcommand == "fit" and bool(run),
                run_name=self._run_name,
            )
        trainer = super().instantiate_trainer(**kwargs)
        callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]
        has_monitor = any(isinstance(c, LearningRateMonitor) for c in callbacks)
        if trainer.loggers and not has_monitor:
            # LearningRateMonitor raises without a logger, so it is only added when there is one.
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        if _mlflow_logger(trainer) is None:
            for callback in callbacks:
                if isinstance(callback, LogModelCallback) and callback.log_model:
                    callback.log_model = False
                    callback.registered_model_name = None
                    print(
                        "zoo: tracking is off (no MLflow logger: trainer.logger is false, another logger, or "
                        "fast_dev_run), so tracking.log_model is ignored: the model is neither logged nor "
                        "registered.",
                        file=sys.stderr,
                    )
        if self.subcommand == "fit" and self._sub_config().get("ckpt_path") is not None:
            for callback in callbacks:
                if isinstance(callback, ZooCheckpoint):
                    callback.resuming = True
        # first, so that its summary comes before the model's load/serve lines
        callbacks.insert(0, FitSummary())
        return trainer

    def _print_resolved_config(self, config: Any) -> None:
        parser = self._parser(self.subcommand)
        note = ""
        try:
            instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
            instantiate(config)
        except Exception as err:  # the config is still worth printing; say why sizes are missing
            note = f"# linked sizes not resolved: building the data module failed: {err}\n".replace(
                "\n", "\n# "
            )
        dump = yaml.safe_load(parser.dump(config))
        model_args = dump.get("model", {}).get("init_args", {})
        accepted = model_parameters(config)
        linked = {k: v for k, v in self._provided.items() if k in accepted}
        model_args.update(linked)
        header = ""
        if linked:
            header = (
                "# model."
                + ", model.".join(linked)
                + " were linked from the data module; a config may repeat them only with the same value.\n"
            )
        sys.stdout.write(header + note.rstrip("# ") + yaml.safe_dump(dump, sort_keys=False))


def _resume_configured_logger(config: Any, run: dict[str, str], skip_logged_steps: bool = False) -> None:
    """Point an explicitly configured zoo MLflow logger at the fit's run (``run_id`` unset only)."""
    logger = config.trainer.get("logger")
    class_path = getattr(logger, "class_path", None) if logger is not None else None
    if not isinstance(class_path, str) or not class_path.endswith("ZooMLFlowLogger"):
        return
    init_args = logger.get("init_args")
    if init_args is None:
        return
    if init_args.get("run_id") is None:
        init_args["run_id"] = run["run_id"]
        if init_args.get("tracking_uri") is None:
            init_args["tracking_uri"] = run.get("tracking_uri")
        if skip_logged_steps:
            init_args["skip_logged_steps"] = True


# -- checks -------------------------------------------------------------------------------------------
def _class_of(section: Any) -> type | None:
    class_path = getattr(section, "class_path", None) if section is not None else None
    if not isinstance(class_path, str):
        return None
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(import_module(module), name)
    except (ImportError, AttributeError):
        return None


def model_parameters(config: Any) -> dict[str, inspect.Parameter]:
    """The ``__init__`` parameters of the configured model class (empty if it cannot be imported)."""
    cls = _class_of(config.get("model"))
    if cls is None:
        return {}
    return dict(inspect.signature(cls).parameters)


def check_encoder_cell(config: Any) -> None:
    """Fail early, before any data is loaded, on an encoder configuration that cannot be built (an unknown
    ``model.init_args.encoder.cell`` or option, a size below 1, a dropout outside [0, 1))."""
    from zoo.encoder import EncoderConfig, check_encoder_args

    model = config.get("model")
    encoder = model.get("init_args", {}).get("encoder") if model is not None else None
    if isinstance(encoder, dict):
        check_encoder_keys(encoder)
    if (
        encoder is None
        or hasattr(encoder, "class_path")
        or not isinstance(getattr(encoder, "cell", None), str)
    ):
        return
    default = EncoderConfig()
    args = {
        name: getattr(encoder, name, getattr(default, name))
        for name in ("cell", "hidden_size", "num_layers", "dropout", "cell_options", "init", "init_scale")
    }
    try:
        check_encoder_args(
            args["cell"],
            args["hidden_size"],
            args["num_layers"],
            args["dropout"],
            args["cell_options"] or {},
            args["init"],
            args["init_scale"],
        )
    except ValueError as err:
        raise ZooConfigError(f"--model.encoder: {err}") from None


def check_tracking_config(config: Any) -> None:
    """The ``tracking`` section's settings agree (see :func:`~zoo.tracking.callbacks.check_tracking_args`)."""
    tracking = config.get("tracking")
    if tracking is not None:
        name = tracking.get("registered_model_name")
        check_tracking_args(bool(tracking.get("log_model")), name, tracking.get("max_length", 1))


def zoo_error_in(err: BaseException) -> ZooError | None:
    """The first :class:`ZooError` in an exception's chain of causes, or ``None``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, ZooError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _config_dirs(config: Any) -> list[Path]:
    """Directories of the config files given with ``-c``, last first."""
    files = config.get("config") or []
    dirs = []
    for file in reversed(files if isinstance(files, list) else [files]):
        path = Path(getattr(file, "absolute", None) or os.fspath(file))
        dirs.append(path.parent)
    return dirs


def _resolve(file: str, key: str, config_dirs: list[Path]) -> str:
    """``file`` as given if it exists (or is not a local path), else beside a recipe, else an error."""
    if any(m in file for m in _REMOTE_MARKERS) or Path(file).exists():
        return file
    if not Path(file).is_absolute():
        for folder in config_dirs:
            if (folder / file).exists():
                return str(folder / file)
    where = "" if Path(file).is_absolute() else f" (looked in the working directory {os.getcwd()}"
    if where and config_dirs:
        where += " and beside the config file"
    where += ")" if where else ""
    raise ZooConfigError(
        f"{key}: data file not found: {file}{where}. Point --{key} at an existing file "
        "(docs/recipes.md shows the local overrides for the bundled recipes)."
    )


def _resolve_files(value: Any, key: str, config_dirs: list[Path]) -> Any:
    if isinstance(value, str):
        return _resolve(value, key, config_dirs)
    if isinstance(value, dict):
        return {split: _resolve_files(v, f"{key}.{split}", config_dirs) for split, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve_files(v, key, config_dirs) for v in value]
    return value


def resolve_data_files(config: Any) -> None:
    """Check that local data files exist, naming the key and the path of any that does not.

    A relative path that is not found in the working directory is looked up beside the ``-c`` config
    files, so a recipe can ship its data next to itself (``recipes/forecast/``) and run from anywhere.
    """
    data = config.get("data")
    init_args = data.get("init_args") if data is not None else None
    if init_args is None:
        return
    dirs = _config_dirs(config)
    if init_args.get("data_files") is not None:
        init_args["data_files"] = _resolve_files(init_args["data_files"], "data.data_files", dirs)
    path = init_args.get("path")
    if isinstance(path, str) and path.lower().endswith(_FILE_SUFFIXES):
        init_args["path"] = _resolve(path, "data.path", dirs)


def resolve_checkpoint_alias(config: Any) -> None:
    """Turn ``--ckpt_path best`` / ``last`` into a file of the latest run of this config.

    Lightning resolves these names only inside the process that ran ``fit``; ``zoo test -c RECIPE
    --ckpt_path best`` in a new process looks in the checkpoint folders the CLI writes
    (``checkpoint.dirpath``, else ``<default_root_dir>/lightning_logs/version_N/checkpoints`` or
    ``<default_root_dir>/checkpoints/version_N``), newest first.
    """
    alias = config.get("ckpt_path")
    if alias not in ("best", "last"):
        return
    checkpoint = config.get("checkpoint")
    dirpath = checkpoint.get("dirpath") if checkpoint is not None else None
    root = Path(config.trainer.get("default_root_dir") or ".")
    if dirpath:
        folders = [Path(dirpath)]
    else:
        found = [*root.glob("lightning_logs/version_*/checkpoints"), *root.glob("checkpoints/version_*")]
        folders = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    from zoo.checkpoint import newest_checkpoint

    for folder in folders:
        found_file = newest_checkpoint(folder, alias)
        if found_file is not None:
            config["ckpt_path"] = str(found_file)
            return
    where = dirpath or f"{root}/lightning_logs/version_*/checkpoints or {root}/checkpoints/version_*"
    raise ZooConfigError(
        f"--ckpt_path {alias}: no {alias} checkpoint found in {where}. Run `zoo fit` with the same config "
        "first, or give the checkpoint's path."
    )


def check_checkpoint_path(config: Any, already: str | None = None) -> str | None:
    """Read ``--ckpt_path`` weights-only before anything is built, and make Lightning read it so too.

    A missing, empty, truncated or foreign file, or one holding code, raises ``CheckpointError`` (exit 2)
    before the data module is built; names Lightning resolves itself (``best``, ``last``...) and remote
    URLs are left to it, still with ``weights_only=True``. A path equal to ``already`` is not read again.
    Returns the path checked, if any.
    """
    if "weights_only" not in config:
        return None
    if config.get("weights_only") is False:
        raise ZooConfigError(
            "--weights_only false: the zoo reads checkpoints with weights_only=True only (a checkpoint that "
            "needs more could run code when loaded). Remove the option."
        )
    config["weights_only"] = True
    path = config.get("ckpt_path")
    if not isinstance(path, str | os.PathLike) or _lightning_resolves(str(path)):
        return None
    if str(path) != already:
        from zoo.checkpoint import read_checkpoint

        read_checkpoint(path)
    return str(path)


def _lightning_resolves(path: str) -> bool:
    return path in ("best", "last", "hpc") or path.startswith("registry") or "://" in path


def resume_in_checkpoint_dir(config: Any) -> None:
    """``zoo fit --ckpt_path X`` continues in X's folder (no new ``version_N``; the best score carries on);
    ``zoo validate/test/predict --ckpt_path X`` keep the checkpoint callback there too, so they neither
    reserve an empty ``version_N`` nor make Lightning warn that the folder has changed.

    Only when the config names no ``checkpoint.dirpath`` and no file logger decides the folder.
    """
    checkpoint = config.get("checkpoint")
    if checkpoint is None or checkpoint.get("dirpath"):
        return
    logger = config.trainer.get("logger")
    class_path = getattr(logger, "class_path", "") if logger is not None else ""
    if class_path and not class_path.endswith("MLFlowLogger"):
        return  # a CSV/TensorBoard logger puts checkpoints under its own log_dir
    checkpoint["dirpath"] = os.path.realpath(Path(config["ckpt_path"]).parent)


def explicit_linked_values(config: Any) -> dict[str, Any]:
    """Linked sizes the config sets to something other than the model's default."""
    params = model_parameters(config)
    model = config.get("model")
    init_args = model.get("init_args", {}) if model is not None else {}
    explicit = {}
    for name in LINKED_SIZES:
        if name not in params or name not in init_args:
            continue
        value, default = init_args[name], params[name].default
        if value is not None and (default is inspect.Parameter.empty or value != default):
            explicit[name] = value
    return explicit


def check_conflicts(explicit: dict[str, Any], provided: dict[str, Any]) -> None:
    """A size typed in the config must agree with the data module's (the link wins otherwise)."""
    clashes = [
        f"model.{k}={v!r} but the data module has {k}={provided[k]!r}"
        for k, v in explicit.items()
        if k in provided and provided[k] != v
    ]
    if clashes:
        raise ZooConfigError(
            "sizes are linked from the data module and must not be set differently in the config: "
            + "; ".join(clashes)
            + ". Remove them from the recipe."
        )


def missing_sizes_hint(config: Any, provided: dict[str, Any]) -> str:
    """Explain a model that failed to build because the data module lacks sizes it requires."""
    params = model_parameters(config)
    init_args = config.model.get("init_args", {})
    missing = [
        name
        for name in LINKED_SIZES
        if name in params
        and name not in provided
        and init_args.get(name) is None
        and params[name].default in (inspect.Parameter.empty, None)
    ]
    if not missing:
        return ""
    data = config.get("data")
    data_name = getattr(data, "class_path", "the data module")
    model_name = config.model.class_path
    return (
        f"{model_name} needs {', '.join(missing)} from the data module, but {data_name} does not provide "
        f"{'it' if len(missing) == 1 else 'them'}. Use a data module made for this task, or set "
        + " ".join(f"--model.{m}" for m in missing)
        + "."
    )


# -- extra commands -----------------------------------------------------------------------------------
def recipes_root() -> Path:
    """The directory of the bundled recipes (inside the installed package)."""
    return Path(str(resources.files("zoo") / "recipes"))


def list_recipes() -> dict[str, Path]:
    """Recipe name (``quickstart``, ``lm/ptb-gru``) -> file, sorted by name."""
    root = recipes_root()
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*.yaml"))}


def recipe_purpose(path: Path) -> str:
    """The first line of a recipe's header comment that is not a command."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith(("zoo ", "$ ")):
            return text
    return ""


def find_recipe(name: str) -> Path:
    """The file of recipe ``name`` (``quickstart``, ``lm/ptb-gru``; a ``recipes/`` prefix and a ``.yaml``
    suffix are allowed); an unknown name raises ``ZooConfigError`` listing the valid ones."""
    recipes = list_recipes()
    key = name.removeprefix("recipes/").removesuffix(".yaml")
    if key not in recipes:
        import difflib

        close = difflib.get_close_matches(key, list(recipes), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ZooConfigError(
            f"unknown recipe {name!r}, and no file of that name.{hint} Valid recipes: {', '.join(recipes)} "
            "(`zoo recipes` describes them); or give the path of a YAML file."
        )
    return recipes[key]


def _is_inline_config(value: str) -> bool:
    """jsonargparse also takes a config's text after ``-c`` (``-c '{trainer: {max_epochs: 1}}'``)."""
    return "\n" in value or ":" in value.split("/")[0] or value.lstrip().startswith(("{", "["))


def resolve_recipe_names(args: list[str]) -> list[str]:
    """``args`` with every ``-c``/``--config`` value that is not an existing file replaced by the file of
    the bundled recipe of that name (``zoo fit -c quickstart``, ``-c classify/sst2-gru``).

    A path that exists always wins, and inline config text is left to jsonargparse. A value that is
    neither raises ``ZooConfigError`` listing the valid recipe names (with the closest ones first).
    """
    out = list(args)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if flag not in ("-c", "--config"):
            continue
        if eq:
            out[i] = f"{flag}={_recipe_or_file(value)}"
        elif i + 1 < len(out):
            out[i + 1] = _recipe_or_file(out[i + 1])
    return out


def _recipe_or_file(value: str) -> str:
    if Path(value).expanduser().exists() or _is_inline_config(value):
        return value
    return str(find_recipe(value))


def _recipes_command(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="zoo recipes", description="The bundled training recipes.")
    parser.add_argument("action", nargs="?", choices=["list", "show", "path"], default="list")
    parser.add_argument("name", nargs="?", help="recipe name, e.g. quickstart or lm/ptb-gru")
    ns = parser.parse_args(args)
    if ns.action == "list":
        recipes = list_recipes()
        width = max((len(n) for n in recipes), default=0)
        for name, path in recipes.items():
            print(f"{name:{width}s}  {recipe_purpose(path)}")
        print("\nRun one with: zoo fit -c NAME (a file path works too)")
        return 0
    if ns.name is None:
        parser.error(f"`zoo recipes {ns.action}` needs a recipe NAME (see `zoo recipes`)")
    path = find_recipe(ns.name)
    print(path.read_text() if ns.action == "show" else path, end="" if ns.action == "show" else "\n")
    return 0


def _cells_command(args: list[str]) -> int:
    import argparse

    from zoo.cells import build_cell, get_cell_spec, list_cells

    parser = argparse.ArgumentParser(prog="zoo cells", description="The registered recurrent cells.")
    parser.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'gru*'")
    parser.add_argument("--input-size", type=int, default=128, help="input features (for the count)")
    parser.add_argument("--hidden-size", type=int, default=128, help="hidden size (for the count)")
    ns = parser.parse_args(args)
    rows = [("name", "parameters", "fused", "parallel", "paper")]
    for name in list_cells(ns.pattern):
        spec = get_cell_spec(name)
        layer = build_cell(name, ns.input_size, ns.hidden_size)
        count = sum(p.numel() for p in layer.parameters())
        rows.append(
            (name, f"{count:,}", "yes" if spec.fused else "", "yes" if spec.parallel else "", spec.paper)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [
            f"{c:>{w}s}" if i == 1 else f"{c:{w}s}"
            for i, (c, w) in enumerate(zip(row[:4], widths, strict=True))
        ]
        print("  ".join([*cells, row[4]]))
    size = f"input_size={ns.input_size}, hidden_size={ns.hidden_size}"
    print(f"\nparameters of one layer, one direction, at {size}")
    return 0


def _leave_process_group() -> None:
    """After a fault that stopped every DDP rank at once (the non-finite guard decides on all ranks), leave
    the process group: exiting with gloo's threads alive aborted the process (``terminate called without an
    active exception``, exit status -6) instead of returning the error's status."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    if verbose:
        args.remove("--verbose")
    quiet_output(verbose)  # the one place that silences dependencies' noise (zoo/quiet.py)
    try:
        if args[:1] == ["cells"]:
            return _cells_command(args[1:])
        if args[:1] == ["recipes"]:
            return _recipes_command(args[1:])
        if args[:1] == ["serve"]:
            from zoo.tracking.serve import serve_main

            return serve_main(args[1:])
        if args[:1] == ["predict"] and args[1:2] and not args[1].startswith("-"):
            from zoo.predict_cli import predict_main  # `zoo predict MODEL ...`; `-c recipe` is LightningCLI's

            return predict_main(args[1:])
        print_linked = "--print_config" in args
        if print_linked:
            args.remove("--print_config")
        if args[:1] in (["fit"], ["validate"], ["test"], ["predict"]):
            args = resolve_recipe_names(args)
            tune_malloc_for_training()  # CPU: reuse large per-step buffers instead of page-faulting them
        # LightningCLI reads sys.argv, and under DDP Lightning's launcher re-runs sys.argv for every other
        # rank: it must hold the whole command (cut to the program name, rank 1 got no subcommand).
        saved_argv, sys.argv = sys.argv, [sys.argv[0], *args]
        try:
            ZooCLI(args=None, print_linked=print_linked)
        finally:
            sys.argv = saved_argv
    except ZooError as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        _leave_process_group()
        return err.exit_code
    except TrackingServerUnreachable as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    except SIGTERMException:
        return 128 + 15  # what a shell reports for a process ended by SIGTERM; Lightning's exception says 0
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
