"""The model registry: one registered name per task class, versions, and aliases (not stages).

An alias (``champion``) moves to a new version only when that version's monitored metric is finite and at
least as good as the current holder's on the same metric, unless forced; see :func:`register`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TASK_TAG = "zoo.task"
#: Version tags that record the monitored metric the version was selected on, for the alias rule.
METRIC_TAG = "zoo.metric"
MODE_TAG = "zoo.metric_mode"
VALUE_TAG = "zoo.metric_value"
#: Tag (on the run and the version) that says what registration did with the alias.
DECISION_TAG = "zoo.registration"
FORCE_HINT = "pass --tracking.force_alias true to move it"


class RegistryNameConflict(ValueError):
    """A registered model name is already used by a different task."""


def check_registered_name(client: Any, name: str, task_class: str) -> None:
    """Refuse ``name`` when it is registered for another task (its ``zoo.task`` tag) or outside the zoo.

    Args:
        client: an ``mlflow.MlflowClient`` on the registry.
        name: the registered model name.
        task_class: the ``module.Class`` of the task about to be registered.
    """
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(err).lower():
            return
        raise
    registered = (model.tags or {}).get(TASK_TAG)
    if registered == task_class:
        return
    if registered is None and not model.latest_versions:
        return
    held_by = f"task {registered}" if registered else "a model not made by rnn-zoo (no zoo.task tag)"
    raise RegistryNameConflict(
        f"registered model name {name!r} is already used by {held_by}; this model is a {task_class}. "
        "Choose another registered_model_name, or delete the old registered model first."
    )


@dataclass(frozen=True)
class Score:
    """A version's monitored metric: its name, whether higher (``"max"``) or lower (``"min"``) is better,
    and its value (the best checkpoint's)."""

    metric: str
    mode: str
    value: float

    @property
    def finite(self) -> bool:
        """Whether the value is a finite number (NaN and inf are never registered)."""
        return math.isfinite(self.value)

    def at_least_as_good_as(self, other: float) -> bool:
        """Whether this score is at least as good as ``other`` on the same metric (a non-finite ``other``
        is beaten by any finite score)."""
        if not math.isfinite(other):
            return self.finite
        return self.value >= other if self.mode == "max" else self.value <= other

    def tags(self) -> dict[str, str]:
        """The version tags that record the score, read back by :func:`holder_score`."""
        return {METRIC_TAG: self.metric, MODE_TAG: self.mode, VALUE_TAG: repr(self.value)}


@dataclass(frozen=True)
class Registration:
    """What :func:`register` did: the new ``ModelVersion``, whether the alias now points at it, and a
    one-line account of both (also set as the ``zoo.registration`` tag on the version and the run)."""

    version: Any
    alias_moved: bool
    message: str


def holder_score(client: Any, holder: Any, score: Score) -> tuple[float | None, str]:
    """The alias holder's value of ``score.metric``, or ``None`` and why it cannot be compared.

    The value comes from the holder's version tags (:meth:`Score.tags`); a version registered without them
    is scored by the best value of the metric in its run's history.
    """
    tags = holder.tags or {}
    if METRIC_TAG in tags:
        if (tags[METRIC_TAG], tags.get(MODE_TAG)) != (score.metric, score.mode):
            return None, (
                f"version {holder.version} was selected on {tags[METRIC_TAG]} ({tags.get(MODE_TAG)}), this "
                f"one on {score.metric} ({score.mode}): the scores are not comparable"
            )
        return float(tags[VALUE_TAG]), ""
    history = client.get_metric_history(holder.run_id, score.metric) if holder.run_id else []
    if not history:
        return None, f"the run of version {holder.version} has no {score.metric} to compare with"
    values = [m.value for m in history]
    finite = [v for v in values if math.isfinite(v)] or values
    return (max(finite) if score.mode == "max" else min(finite)), ""


def alias_decision(client: Any, name: str, alias: str, score: Score | None, force: bool) -> tuple[bool, str]:
    """Whether ``alias`` of ``name`` should move to a new version scored ``score``, and why.

    It moves when nothing holds it yet, when ``force``, or when ``score`` is at least as good as the
    holder's on the same metric and mode; otherwise it stays.
    """
    from mlflow.exceptions import MlflowException

    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return True, f"{alias} points at it (no version held {alias} before)"
    if force:
        return True, f"{alias} moves to it from version {holder.version} (forced)"
    if score is None:
        why = "this run monitors no metric to compare (set checkpoint.monitor)"
        return False, f"{alias} stays at version {holder.version}: {why}; {FORCE_HINT}"
    theirs, why = holder_score(client, holder, score)
    if theirs is None:
        return False, f"{alias} stays at version {holder.version}: {why}; {FORCE_HINT}"
    if score.at_least_as_good_as(theirs):
        return True, (
            f"{alias} moves to it from version {holder.version} "
            f"({score.metric} {score.value:.4g} vs {theirs:.4g})"
        )
    worse = "<" if score.mode == "max" else ">"
    return False, (
        f"{alias} stays at version {holder.version} ({score.metric} {score.value:.4g} {worse} {theirs:.4g}); "
        f"{FORCE_HINT}"
    )


def register(
    client: Any,
    model_uri: str,
    name: str,
    task_class: str,
    alias: str | None = None,
    run_id: str | None = None,
    score: Score | None = None,
    force_alias: bool = False,
) -> Registration:
    """Register ``model_uri`` as a new version of ``name``; move ``alias`` to it only if it is as good.

    The alias moves by :func:`alias_decision`: when unset, when ``force_alias``, or when ``score`` is at
    least as good as the holder's on the same metric. The score is stored as version tags, and the decision
    as the ``zoo.registration`` tag of the version and of ``run_id``'s run.

    Args:
        client: an ``mlflow.MlflowClient`` on the registry.
        model_uri: the logged model (``runs:/<run_id>/model`` or ``models:/m-...``).
        name: the registered model name.
        task_class: the ``module.Class`` of the task (see :func:`check_registered_name`).
        alias: the alias to move, e.g. ``"champion"``; ``None`` moves none.
        run_id: the run that logged the model, tagged with the decision.
        score: the model's monitored metric; ``None`` when the run monitors none.
        force_alias: move the alias whatever the scores.

    Raises:
        ValueError: ``score`` is NaN or infinite: such a model is never registered.
    """
    import mlflow
    from mlflow.store.artifact.utils.models import _parse_model_id_if_present

    if score is not None and not score.finite:
        raise ValueError(f"refusing to register {name}: its {score.metric} is {score.value} (non-finite)")
    check_registered_name(client, name, task_class)
    if not _exists(client, name):
        client.create_registered_model(name, tags={TASK_TAG: task_class})
    else:
        client.set_registered_model_tag(name, TASK_TAG, task_class)
    tags = {TASK_TAG: task_class, **(score.tags() if score is not None else {})}
    model_id = _parse_model_id_if_present(model_uri)
    if model_id is not None:
        # the registered model exists by now: mlflow.register_model would try to create it again and
        # print "Registered model ... already exists" on every registration
        version = client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    else:
        version = mlflow.register_model(model_uri, name, tags=tags)
    moved, why = alias_decision(client, name, alias, score, force_alias) if alias else (False, "")
    if moved:
        client.set_registered_model_alias(name, alias, version.version)
    message = f"Registered {name} version {version.version}" + (f"; {why}" if why else "")
    client.set_model_version_tag(name, version.version, DECISION_TAG, message)
    if run_id:
        client.set_tag(run_id, DECISION_TAG, message)
    return Registration(version, moved, message)


def _exists(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True
