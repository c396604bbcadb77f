"""Run-wide settings: QUICK mode, the cache directory and the default device.

QUICK mode (``MMTUTORIAL_QUICK=1``) is what tests and CI use: every code path runs, on less data and
fewer steps.  Chapters choose their sizes with one helper, ``scale(full=..., quick=...)``, so the
switch lives in one place.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")

QUICK_ENV = "MMTUTORIAL_QUICK"
CACHE_ENV = "MMTUTORIAL_CACHE"
DEVICE_ENV = "MMTUTORIAL_DEVICE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """True when ``MMTUTORIAL_QUICK`` is set to a true value (read on every call, so tests can flip it)."""
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{QUICK_ENV} must be one of {sorted(_TRUE | _FALSE)}, got {value!r}")


def scale(full: T, quick: T) -> T:
    """Pick a size for the current mode: ``epochs = scale(full=10, quick=1)``."""
    if type(full) is not type(quick):
        raise TypeError(f"scale() wants full and quick of one type, got {type(full).__name__} "
                        f"and {type(quick).__name__}")
    return quick if is_quick() else full


def mode_name() -> str:
    return "QUICK" if is_quick() else "full"


def cache_dir(*parts: str) -> Path:
    """The mmtutorial cache (``MMTUTORIAL_CACHE``, default ``~/.cache/mmtutorial``), created on demand.

    ``cache_dir("models")`` returns (and creates) a sub-folder.
    """
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "mmtutorial")
    path = Path(root).expanduser().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or ``MMTUTORIAL_DEVICE``) forces one, e.g. ``"cpu"`` for reproducible numbers.
    """
    choice = prefer or os.environ.get(DEVICE_ENV)
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} was asked for but CUDA is not available")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"device {choice!r} was asked for but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_run(device: torch.device | None = None) -> str:
    """One line for a chapter's setup cell: mode, device, torch version and cache location."""
    device = device or get_device()
    return (f"mmtutorial: {mode_name()} mode on {device} (torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads); cache at {cache_dir()}")
