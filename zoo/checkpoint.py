"""Reading checkpoints safely: weights only, and a clear error for a file that is not a usable checkpoint.

Every checkpoint the zoo reads (``zoo.load_model``, ``Predictor.from_files``, ``--ckpt_path`` of ``zoo
fit/validate/test/predict``) goes through :func:`read_checkpoint` first. It calls ``torch.load`` with
``weights_only=True`` passed explicitly, so that nothing in the file can run code, whatever the torch
default and whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says (torch >= 2.6 lets that variable override
only a call that does not pass ``weights_only``; the zoo requires torch >= 2.10, the first release without
a known way to run code through the weights-only unpickler, CVE-2026-24747). An empty, truncated or
foreign file, or one that holds code, raises :class:`~zoo.errors.CheckpointError` naming the file and
what is wrong with it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from zoo.errors import CheckpointError

#: Keys of a Lightning checkpoint that the zoo needs: the weights, and the hyperparameters that rebuild
#: the task (the latter only where the task is rebuilt from the file, not where a module is given).
STATE_KEY = "state_dict"
HPARAMS_KEY = "hyper_parameters"
#: Lightning reads this key on every load (to migrate old checkpoints) and fails with a bare KeyError.
VERSION_KEY = "pytorch-lightning_version"

_WHICH = "Use another checkpoint (the best one, or an earlier one) or train again."
_WRAP = (
    "torch.save({'state_dict': weights, 'hyper_parameters': dict(task.hparams), "
    "'pytorch-lightning_version': lightning.__version__}, path)"
)


def newest_checkpoint(folder: str | os.PathLike[str], alias: str = "best") -> Path | None:
    """The newest ``last*.ckpt`` (``alias="last"``) or other ``.ckpt`` (``"best"``: the zoo keeps one best
    checkpoint beside ``last.ckpt``) in a checkpoint folder, or ``None``."""
    files = sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    wanted = [f for f in files if f.name.startswith("last") == (alias == "last")]
    return wanted[0] if wanted else None


def read_checkpoint(path: str | os.PathLike[str], need_hparams: bool = False) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True`` on CPU, or say precisely why it cannot be.

    Args:
        path: the ``.ckpt`` file.
        need_hparams: also require ``hyper_parameters`` (to rebuild the task from the file alone).

    Returns:
        The checkpoint dict (``state_dict``, ``hyper_parameters``, and whatever else Lightning stored).

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a PyTorch file, holds Python objects
            that would run code when unpickled, or is not a Lightning checkpoint (e.g. a bare state_dict).
    """
    import torch

    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {file} {what}. Give the path of a .ckpt file written by zoo fit.")
    size = file.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"checkpoint {file} is empty (0 bytes): it was not written completely (a crash or a full disk "
            f"while saving). {_WHICH}"
        )
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _unpickling_error(file, err) from None
    except (EOFError, RuntimeError, KeyError, ValueError, OSError, IndexError) as err:
        raise _format_error(file, size, err) from None
    return _check_layout(file, loaded, need_hparams)


def _unpickling_error(file: Path, err: pickle.UnpicklingError) -> CheckpointError:
    text = str(err)
    if "Weights only load failed" not in text:
        return CheckpointError(f"{file} is not a PyTorch checkpoint (unpickling failed: {text}). {_WHICH}")
    # torch names what it refused on a line of its own: a GLOBAL (a class or function the file would
    # import and call) means code; anything else (e.g. "Unsupported operand 149") a foreign pickle
    reason = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), None)
    if reason is None:
        detail = next((line.strip() for line in text.splitlines() if "Unsupported" in line), "")
        return CheckpointError(
            f"{file} is not a PyTorch checkpoint (a pickle that torch's weights-only loader cannot read: "
            f"{detail or 'unknown format'}). Give a .ckpt file written by `zoo fit`."
        )
    return CheckpointError(
        f"checkpoint {file} holds Python objects that would run code when loaded ({reason}). The zoo loads "
        "checkpoints with weights_only=True and refuses this one: load only checkpoints written by "
        "`zoo fit` or Lightning's Trainer.save_checkpoint, from a source you trust."
    )


def _format_error(file: Path, size: int, err: BaseException) -> CheckpointError:
    with file.open("rb") as handle:
        head = handle.read(4)
    if head == b"PK\x03\x04":
        if not zipfile.is_zipfile(file) or "central directory" in str(err):
            return CheckpointError(
                f"checkpoint {file} is truncated or corrupt ({size} bytes; the archive ends early or is "
                f"damaged: {_first_line(err)}). {_WHICH}"
            )
        return CheckpointError(
            f"{file} is a zip archive but not a PyTorch checkpoint (torch.save writes one folder holding "
            "data.pkl; this archive has another layout). Give a .ckpt file written by `zoo fit`."
        )
    if isinstance(err, EOFError):
        return CheckpointError(f"checkpoint {file} is truncated ({size} bytes, ends early). {_WHICH}")
    return CheckpointError(
        f"{file} is not a PyTorch checkpoint ({size} bytes starting with {head!r}; torch.load failed: "
        f"{type(err).__name__}: {_first_line(err)}). Give a .ckpt file written by `zoo fit`."
    )


def _first_line(err: BaseException) -> str:
    """The first sentence of an error (torch appends paragraphs of advice that do not apply here)."""
    lines = str(err).strip().splitlines()
    return lines[0].split(". ")[0].rstrip(".") if lines else type(err).__name__


def _check_layout(file: Path, loaded: Any, need_hparams: bool) -> dict[str, Any]:
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"{file} is a PyTorch file holding a {type(loaded).__name__}, not a Lightning checkpoint (a dict "
            f"with {STATE_KEY!r} and {HPARAMS_KEY!r}). Give a .ckpt file written by `zoo fit`."
        )
    if STATE_KEY not in loaded:
        import torch

        if loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
            found = "a bare state_dict (parameter names to tensors)"
        else:
            found = f"a dict with keys {sorted(map(str, loaded))[:8]}"
        raise CheckpointError(
            f"{file} is {found}, not a Lightning checkpoint: it has no {STATE_KEY!r}. Give a .ckpt file "
            f"written by `zoo fit`, or wrap the weights: {_WRAP}."
        )
    if VERSION_KEY not in loaded:
        raise CheckpointError(
            f"{file} has no {VERSION_KEY!r}, so it was not written by Lightning, which needs the key to read "
            f"it. Give a .ckpt file written by `zoo fit`, or add the key: {_WRAP}."
        )
    if need_hparams and not isinstance(loaded.get(HPARAMS_KEY), dict):
        raise CheckpointError(
            f"checkpoint {file} has no {HPARAMS_KEY!r}, so the task cannot be rebuilt from it: the task "
            "must call self.save_hyperparameters() in __init__."
        )
    return loaded


def check_weights_fit(model: Any, path: str | os.PathLike[str]) -> None:
    """Raise :class:`CheckpointError` when the checkpoint at ``path`` does not fit ``model``'s weights.

    ``--ckpt_path best`` picks the newest checkpoint folder of a recipe whatever overrides trained it, so a
    checkpoint of ``--model.encoder.cell lstm`` met the recipe's GRU and failed deep inside Lightning with
    "Missing key(s) in state_dict". This names the first differences and the config that fits.
    """
    file = Path(path)
    saved = read_checkpoint(file).get("state_dict", {})
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in saved.items() if hasattr(v, "shape")}
    problems = [f"{k} is missing from the checkpoint" for k in wanted if k not in have]
    problems += [f"the checkpoint has {k}, which this model lacks" for k in have if k not in wanted]
    problems += [
        f"{k} is {list(have[k])} in the checkpoint but {list(wanted[k])} in this model"
        for k in wanted
        if k in have and have[k] != wanted[k]
    ]
    if not problems:
        return
    config = file.parent / "config.yaml"
    fix = (
        f"run with the config that trained it, `-c {config}`, or the same --model overrides as its fit"
        if config.is_file()
        else "give the same --model overrides as the fit that wrote it"
    )
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    raise CheckpointError(
        f"checkpoint {file} was trained with another model configuration: {shown}. To fix: {fix}."
    )
