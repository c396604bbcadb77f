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
from pathlib import Path
from typing import IO, Any, Callable

import torch


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
