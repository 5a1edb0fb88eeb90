"""How the ``zoo`` command reports a mistake: one line naming the cause, with the valid choices.

jsonargparse reports an unknown key under a model or data class as a "Union subtypes" dump of many lines
(and prints the usage of every option before it). :class:`ZooArgumentParser` prints instead::

    zoo: error: --data.batch_sise: zoo.data.CuisineMemoryData has no parameter 'batch_sise' (did you
    mean 'batch_size'?). Its parameters: ...

and exits with status 2. ``zoo --verbose`` adds jsonargparse's full report below that line. Errors found
after parsing are turned into :class:`~zoo.errors.ZooConfigError` here too (an encoder's unknown key, an
input error of a data module's ``__init__``), which the command prints the same way.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
from collections.abc import Iterable
from importlib import import_module
from typing import Any, NoReturn

from lightning import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser

from zoo.errors import ZooConfigError
from zoo.quiet import verbose


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``word``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def class_parameters(class_path: str) -> list[str]:
    """The ``__init__`` parameter names of ``class_path`` (empty if it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(import_module(module), name)
        params = inspect.signature(cls).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def parser_keys(parser: Any) -> list[str]:
    """Every option key of ``parser`` and of its subcommands (``trainer.max_epochs``, ``data``...)."""
    keys = {a.dest for a in getattr(parser, "_actions", []) if a.dest and a.dest != "help"}
    subcommands = getattr(parser, "_subcommands_action", None)
    for sub in getattr(subcommands, "_name_parser_map", {}).values():
        keys.update(parser_keys(sub))
    return sorted(keys)


def _unknown_key(key: str, parser: Any) -> str:
    keys = parser_keys(parser)
    section = key.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == section]
    names = ", ".join(k.rpartition(".")[2] for k in siblings)
    listed = f" Options of {section}: {names}." if siblings else ""
    return f"unknown option {key!r}{did_you_mean(key, keys)}.{listed}"


def _union_error(key: str, body: list[str]) -> str | None:
    """Shorten jsonargparse's "Does not validate against any of the Union subtypes" report of ``key``."""
    items: list[list[str]] = []
    in_errors = False
    for line in body:
        text = line.strip()
        if text == "Errors:":
            in_errors = True
        elif in_errors and text.startswith("- "):
            items.append([text[2:]])
        elif in_errors and items and line.startswith(" " * 6):
            items[-1].append(text)
        elif in_errors:
            in_errors = False
    prefix = "Given value: "
    given = next((ln.strip()[len(prefix) :] for ln in body if ln.strip().startswith(prefix)), "")
    items = [i for i in items if i[0] != "Expected a <class 'NoneType'>"]
    if not items:
        return None
    first, *rest = items[0]
    found = re.match(r"Problem with given class_path '([^']+)':", first)
    if not found:
        return f"--{key}: {first}" + (f", got {given}" if given else "")
    class_path = found.group(1)
    inner = " ".join(rest)
    option = re.match(r"Option '([^']+)' is not accepted", inner)
    if option:
        params = class_parameters(class_path)
        return (
            f"--{key}.{option.group(1)}: {class_path} has no parameter {option.group(1)!r}"
            f"{did_you_mean(option.group(1), params)}. Its parameters: {', '.join(params)}."
        )
    if re.match(r"(module '.*' has no attribute|No module named)", inner):
        module, _, name = class_path.rpartition(".")
        try:
            names = [n for n in dir(import_module(module)) if not n.startswith("_")]
        except ImportError:
            names = []
        return f"--{key}.class_path: cannot import {class_path!r} ({inner}){did_you_mean(name, names)}."
    nested = re.match(r'Parser key "([^"]+)": (.*)', inner)
    if nested:
        return f"--{key}.{nested.group(1)}: {nested.group(2)}"
    return f"--{key} ({class_path}): {inner}"


def short_message(message: str, parser: Any) -> str:
    """One line naming the mistake in a jsonargparse error ``message``; other messages are kept as they
    are."""
    lines = message.splitlines() or [""]
    head = lines[0]
    unrecognized = re.match(r"unrecognized arguments: (.*)", head)
    if unrecognized:
        options = [a for a in unrecognized.group(1).split() if a.startswith("--")]
        if options:
            return " ".join(_unknown_key(o[2:].split("=")[0], parser) for o in options)
    command = re.match(r"argument subcommand: invalid choice: '([^']*)' \(choose from (.*)\)", head)
    if command:
        choices = re.findall(r"'([^']+)'", command.group(2))
        return (
            f"unknown command {command.group(1)!r}{did_you_mean(command.group(1), choices)}. Training "
            f"commands: {', '.join(choices)} (and `zoo cells`, `zoo recipes`, `zoo serve`; see `zoo --help`)."
        )
    refused = re.match(r"Subcommand '[^']+' does not accept option '([^']+)'", head)
    if refused:
        return _unknown_key(refused.group(1), parser)
    union = re.match(r'Parser key "([^"]+)":\s*$', head)
    if union and any("Union subtypes" in ln for ln in lines[1:3]):
        return _union_error(union.group(1), lines[1:]) or message
    return message


class ZooArgumentParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are one ``zoo: error: ...`` line (exit status 2)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"zoo: error: {short_message(message, parser)}\n")
        sys.stderr.write(f"(`{prog} --help` lists the options; `zoo --verbose ...` shows the full report)\n")
        if verbose():
            sys.stderr.write(f"{message}\n")
        self.exit(2)


def check_encoder_keys(encoder: dict[str, Any]) -> None:
    """An encoder given as a mapping (jsonargparse keeps one with an unknown key as a plain dict) may
    only use :class:`~zoo.encoder.EncoderConfig`'s fields."""
    from zoo.encoder import EncoderConfig

    valid = list(EncoderConfig.__dataclass_fields__)
    for key in encoder:
        if key not in valid:
            raise ZooConfigError(
                f"--model.encoder.{key}: the encoder has no key {key!r}{did_you_mean(key, valid)}. Its keys: "
                f"{', '.join(valid)}."
            )


#: Exceptions that a data module's ``__init__`` raises about its input (files, columns, tokenizer), as
#: opposed to a fault in its code (``TypeError``, ``AttributeError``...).
_INPUT_ERRORS = (ValueError, OSError, LookupError, RuntimeError)


def data_module_error_in(err: BaseException) -> ZooConfigError | None:
    """An input error raised inside a data module's ``__init__`` in ``err``'s chain, as a
    :class:`ZooConfigError` naming the data module (``None`` when there is none).

    The data module's own message comes first; otherwise the model's failure to get the sizes the data
    module never set would be reported instead.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _INPUT_ERRORS):
            tb = current.__traceback__
            while tb is not None:
                frame = tb.tb_frame
                owner = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
                if isinstance(owner, LightningDataModule):
                    return ZooConfigError(f"{type(owner).__name__}: {current}")
                tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return None
