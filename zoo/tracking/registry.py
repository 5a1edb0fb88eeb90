"""The model registry: one registered name per task class, versions, and aliases (not stages)."""

from __future__ import annotations

from typing import Any

TASK_TAG = "zoo.task"


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


def register(
    client: Any,
    model_uri: str,
    name: str,
    task_class: str,
    alias: str | None = None,
    run_id: str | None = None,
) -> Any:
    """Register ``model_uri`` as a new version of ``name`` and point ``alias`` at it.

    Returns:
        The new ``ModelVersion``.
    """
    import mlflow

    check_registered_name(client, name, task_class)
    if not _exists(client, name):
        client.create_registered_model(name, tags={TASK_TAG: task_class})
    else:
        client.set_registered_model_tag(name, TASK_TAG, task_class)
    version = mlflow.register_model(model_uri, name, tags={TASK_TAG: task_class})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def _exists(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True
