"""The MLflow logger every recipe uses: resolved URI, fail-fast check, the SQLite store made on rank 0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from zoo.tracking.uri import check_tracking_server, ensure_store, resolve_tracking_uri, wait_for_store


class ZooMLFlowLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` with the zoo's tracking URI rule and an early check.

    The URI is resolved when the logger is built (``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db``), never Lightning's ``file:./mlruns`` fallback. An HTTP server that does
    not answer raises :class:`~zoo.tracking.uri.TrackingServerUnreachable` naming the URI here, before
    training starts. On rank 0 a missing SQLite store is created at once; other DDP ranks wait for it
    before MLflow opens it, so that ranks never race on its schema migrations (the run belongs to rank 0).

    Args:
        experiment_name: MLflow experiment; created when missing.
        run_name: the run's display name (MLflow picks one when ``None``).
        tracking_uri: explicit URI; ``None`` applies the rule above.
        tags: tags set on the run.
        prefix: prefix of every metric key.
        artifact_location: artifact root of a newly created experiment.
        run_id: resume this run instead of creating one.
        synchronous: log metrics synchronously (``None``: MLflow's default).
        check_server: check that an HTTP tracking server answers (disable only to construct offline).
        skip_logged_steps: with ``run_id``, do not log a metric at a step the run already holds for it. A
            fit resumed from a checkpoint replays the steps between the checkpoint and the crash; the run
            keeps the values it logged the first time (the same values when the resume is exact), so its
            metric history has one value per step.
    """

    def __init__(
        self,
        experiment_name: str = "rnn-zoo",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
        check_server: bool = True,
        skip_logged_steps: bool = False,
    ) -> None:
        uri = resolve_tracking_uri(tracking_uri)
        if check_server:
            check_tracking_server(uri)
        # MLflow opens (and would migrate) a SQLite store as soon as a client is built, on every rank
        if getattr(rank_zero_only, "rank", 0) == 0:
            ensure_store(uri)
        else:
            wait_for_store(uri)
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=uri,
            tags=tags,
            log_model=False,  # raw .ckpt uploads are not MLflow models: LogModelCallback logs a pyfunc
            prefix=prefix,
            artifact_location=artifact_location,
            run_id=run_id,
            synchronous=synchronous,
        )
        self._skip_logged_steps = skip_logged_steps and run_id is not None
        self._logged_steps: dict[str, int] | None = None

    @property
    def experiment(self) -> Any:
        """The MLflow client, the experiment created if missing (two runs may race to create it)."""
        from mlflow.exceptions import MlflowException

        try:
            return super().experiment
        except MlflowException as err:
            if getattr(err, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
            return super().experiment  # the other run created it: now it is found by name

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Any) -> None:
        """Log as Lightning does, without private entries (``_instantiator``, ``_class_path``) that
        LightningCLI adds to a model's hyperparameters for reloading, not as settings of the run."""
        if isinstance(params, Mapping):
            params = {k: v for k, v in params.items() if not str(k).startswith("_")}
        super().log_hyperparams(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log as Lightning does; with ``skip_logged_steps``, only steps past the run's last for a key."""
        if self._skip_logged_steps and step is not None:
            last = self._last_logged_steps()
            metrics = {k: v for k, v in metrics.items() if step > last.get(self._prefixed(k), -1)}
            if not metrics:
                return
        super().log_metrics(metrics, step)

    def _prefixed(self, key: str) -> str:
        return f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}" if self._prefix else key

    def _last_logged_steps(self) -> dict[str, int]:
        """Metric key -> the highest step the run holds for it (read when the resumed run first logs)."""
        if self._logged_steps is None:
            client, run_id = self.experiment, self.run_id
            assert run_id is not None
            self._logged_steps = {
                key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1)
                for key in client.get_run(run_id).data.metrics
            }
        return self._logged_steps

    #: Set when the fit was stopped by SIGTERM or Ctrl-C: the run then ends ``KILLED``, not ``FAILED``.
    interrupted: bool = False

    def finalize(self, status: str = "success") -> None:
        """End the MLflow run: ``FINISHED``, ``FAILED``, or ``KILLED`` after an interruption."""
        super().finalize("KILLED" if status == "failed" and self.interrupted else status)

    @property
    def tracking_uri(self) -> str:
        """The resolved tracking URI this logger writes to."""
        return str(self._tracking_uri)


def make_logger(
    experiment_name: str = "rnn-zoo", run_name: str | None = None, tracking_uri: str | None = None
) -> ZooMLFlowLogger:
    """Build the zoo's MLflow logger (see :class:`ZooMLFlowLogger`) for Python users of ``Trainer``."""
    return ZooMLFlowLogger(experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri)
