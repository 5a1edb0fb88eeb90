"""The cell registry: one name per recurrent layer, filled on import and by plugins.

A cell is registered with :func:`register_cell` and built with :func:`build_cell`. Options that only one
family has are checked against that family's ``__init__`` signature, so a typo in a recipe is an error
that lists the valid options instead of being silently ignored.

Packages can add cells through the ``rnn_zoo.cells`` entry-point group: each entry point names either a
module (importing it registers its cells) or a :class:`~zoo.cells.base.RecurrentLayer` subclass (registered
under the entry point's name). A plugin that fails to load is reported by name and skipped.
"""

from __future__ import annotations

import fnmatch
import inspect
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, TypeVar

from zoo.cells.base import RecurrentLayer
from zoo.errors import ZooConfigError

ENTRY_POINT_GROUP = "rnn_zoo.cells"

_T = TypeVar("_T", bound=type[RecurrentLayer])


@dataclass(frozen=True)
class CellSpec:
    """What the registry knows of a cell.

    Attributes:
        name: the registry name used in recipes (``cell: gru``).
        cls: the layer class.
        paper: short citation (authors, year, arXiv id).
        fused: runs on a torch/cuDNN fused kernel.
        parallel: trains with a parallel scan over time.
        source: ``"zoo"`` for built-in cells, else the plugin's distribution or entry point.
    """

    name: str
    cls: type[RecurrentLayer]
    paper: str
    fused: bool = False
    parallel: bool = False
    source: str = "zoo"

    @property
    def options(self) -> list[str]:
        """Names of the family-specific options (``cell_options``) the cell accepts."""
        return _family_options(self.cls)


_REGISTRY: dict[str, CellSpec] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_PLUGINS_LOADED = False
_COMMON = ("input_size", "hidden_size")


def register_cell(
    name: str, *, paper: str = "", fused: bool = False, parallel: bool = False, source: str = "zoo"
) -> Callable[[_T], _T]:
    """Class decorator that registers a :class:`RecurrentLayer` under ``name``.

    Args:
        name: lowercase registry name, family first (``gru_cho``, ``min_gru``).
        paper: citation shown by ``zoo cells``.
        fused: the layer runs on a fused torch/cuDNN kernel.
        parallel: the layer trains with a parallel scan.
        source: where the cell comes from (``zoo`` or a plugin name).

    Raises:
        ValueError: if ``name`` is taken by another class or the class is not a ``RecurrentLayer``.
    """

    def decorate(cls: _T) -> _T:
        if not (isinstance(cls, type) and issubclass(cls, RecurrentLayer)):
            raise ValueError(f"register_cell({name!r}) expects a RecurrentLayer subclass, got {cls!r}")
        if name != name.lower() or not name.replace("_", "").isalnum():
            raise ValueError(f"cell names are lowercase letters, digits and '_': got {name!r}")
        old = _REGISTRY.get(name)
        if old is not None and old.cls is not cls:
            raise ValueError(
                f"cell name {name!r} is already registered by {old.cls.__module__}.{old.cls.__qualname__}"
            )
        cls.cell_name = name
        _REGISTRY[name] = CellSpec(name, cls, paper, fused, parallel, source)
        return cls

    return decorate


def _family_options(cls: type[RecurrentLayer]) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return [
        p.name
        for p in params.values()
        if p.name not in ("self", *_COMMON) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _unknown_cell(name: str) -> ZooConfigError:
    valid = ", ".join(list_cells())
    hint = ""
    close = [n for n in list_cells() if n.replace("_", "") == name.replace("_", "").lower()]
    if close:
        hint = f" Did you mean {close[0]!r}?"
    return ZooConfigError(f"unknown cell {name!r}.{hint} Valid cells: {valid}.")


def get_cell_spec(name: str) -> CellSpec:
    """Return the :class:`CellSpec` of ``name``; an unknown name raises a ``ZooConfigError`` (a
    ``ValueError``) listing all."""
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown_cell(name) from None


def check_cell_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`~zoo.errors.ZooConfigError` (a ``ValueError``) if ``options`` holds a key that cell
    ``name`` does not take."""
    spec = get_cell_spec(name)
    valid = spec.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        shown = ", ".join(valid) if valid else "none"
        raise ZooConfigError(
            f"cell {name!r} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {shown}."
        )


def build_cell(name: str, input_size: int, hidden_size: int, **options: Any) -> RecurrentLayer:
    """Build the registered cell ``name``.

    Args:
        name: a name from :func:`list_cells`.
        input_size: features per time step.
        hidden_size: size of the state.
        **options: family-specific options, checked against the family's signature.

    Returns:
        A freshly initialised :class:`RecurrentLayer`.

    Raises:
        ZooConfigError: (a ``ValueError``) for an unknown name or option or a size below 1, before any
            tensor is built.
    """
    spec = get_cell_spec(name)
    check_cell_options(name, options)
    check_size("input_size", input_size, "features per input step")
    check_size("hidden_size", hidden_size, "units of the state")
    return spec.cls(input_size=input_size, hidden_size=hidden_size, **options)


def check_size(name: str, value: object, meaning: str) -> None:
    """Raise :class:`~zoo.errors.ZooConfigError` unless ``value`` is an integer of at least 1.

    Args:
        name: the argument, as the user wrote it (``hidden_size``).
        value: what was given.
        meaning: what the size counts, for the message (``"units of the state"``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ZooConfigError(
            f"{name} must be an integer >= 1 ({meaning}), got {value!r}; set {name} to 1 or more"
        )


def list_cells(pattern: str | None = None) -> list[str]:
    """Sorted registry names, optionally filtered by a shell-style ``pattern`` (``"gru*"``)."""
    load_plugins()
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def plugin_errors() -> dict[str, str]:
    """Plugins that failed to load: entry point name -> error message."""
    return dict(_PLUGIN_ERRORS)


def load_plugins(force: bool = False) -> None:
    """Load cells from installed packages' ``rnn_zoo.cells`` entry points (once, unless ``force``).

    An entry point names a module (importing it registers its cells with :func:`register_cell`) or a
    :class:`RecurrentLayer` subclass (registered under the entry point's name unless the class registered
    itself). Cells a plugin adds get ``source="<distribution>:<entry point>"``. A plugin that raises, that
    names anything else, or whose cell name is taken is skipped with a ``RuntimeWarning``, leaves no cell
    behind, and is listed by :func:`plugin_errors`.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED and not force:
        return
    _PLUGINS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        source = f"{dist.name if dist is not None else 'plugin'}:{ep.name}"
        before = set(_REGISTRY)
        try:
            _load_entry_point(ep, source)
        except Exception as err:  # a broken plugin must not take the zoo down with it
            for name in set(_REGISTRY) - before:
                del _REGISTRY[name]
            _PLUGIN_ERRORS[ep.name] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"rnn-zoo: cell plugin {ep.name!r} ({ep.value}) failed to load and was skipped: "
                f"{type(err).__name__}: {err}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        _PLUGIN_ERRORS.pop(ep.name, None)
        for name in set(_REGISTRY) - before:
            if _REGISTRY[name].source == "zoo":
                _REGISTRY[name] = replace(_REGISTRY[name], source=source)


def _load_entry_point(ep: EntryPoint, source: str) -> None:
    obj = ep.load()
    if isinstance(obj, type) and issubclass(obj, RecurrentLayer):
        # a subclass of a registered cell inherits its cell_name: only the class itself counts as registered
        own = _REGISTRY.get(obj.cell_name) if obj.cell_name is not None else None
        if own is None or own.cls is not obj:
            register_cell(ep.name, paper=obj.paper, source=source)(obj)
    elif not isinstance(obj, ModuleType):
        raise TypeError(
            f"an {ENTRY_POINT_GROUP!r} entry point must name a module that registers cells or a "
            f"RecurrentLayer subclass, got {obj!r}"
        )
