"""Checkpoints that are written atomically and loaded safely.

* Writing goes to a temporary file in the same folder, is flushed to disk, then renamed over the target:
  a crash mid-write leaves the previous checkpoint intact, never half a file.
* Loading uses ``torch.load(weights_only=True)``: only tensors and plain containers are unpickled, so a
  checkpoint carrying a pickle payload (arbitrary code) is refused instead of executed.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Callable

import torch
from torch import Tensor, nn


class CheckpointError(ValueError):
    """A checkpoint could not be loaded: truncated, corrupt, or carrying objects that are not weights."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    A crash or an exception part-way leaves the old file (or none) in place, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(handle, "wb") if binary else os.fdopen(handle, "w", encoding="utf-8")) as tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """Save ``obj`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically; return the path."""
    return atomic_write(path, lambda file: torch.save(obj, file))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> Any:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`FileNotFoundError` if it is missing and :class:`CheckpointError` (a ``ValueError``)
    if it is truncated/corrupt or holds anything but weights and plain data.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain containers, which "
            f"weights_only=True does not unpickle (they could run code). Details: {error}") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt "
                              f"({type(error).__name__}: {error}). Delete it and retrain.") from error


def describe_keys(keys: Sequence[str], limit: int = 8) -> str:
    """At most ``limit`` of ``keys``, sorted, for an error message."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_converted_state_dict(model: nn.Module, converted: dict[str, Tensor], *, source: str,
                              config_name: str) -> None:
    """``model.load_state_dict(converted, strict=True)`` after checks whose errors name the keys at fault.

    ``source`` names where the weights came from ("checkpoint", "open_clip") and ``config_name`` the config
    class whose mismatch is the usual cause of wrong shapes; both appear in the error messages.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in converted]
    unexpected = [key for key in converted if key not in expected]
    if missing or unexpected:
        raise ValueError(f"converted weights do not fit this {type(model).__name__}: missing keys: "
                         f"[{describe_keys(missing)}]; unexpected keys: [{describe_keys(unexpected)}]")
    wrong = [f"{key}: ours {tuple(expected[key].shape)}, {source} {tuple(value.shape)}"
             for key, value in converted.items() if value.shape != expected[key].shape]
    if wrong:
        raise ValueError(f"shape mismatch (is the {config_name} the {source}'s?): " + "; ".join(wrong[:5])
                         + (f" ... ({len(wrong)} in all)" if len(wrong) > 5 else ""))
    model.load_state_dict(converted, strict=True)
