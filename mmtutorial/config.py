"""Run-wide settings: QUICK mode, the cache directory and the default device.

QUICK mode (``MMTUTORIAL_QUICK=1``) is what tests and CI use: every code path runs, on less data and
fewer steps.  Chapters choose their sizes with one helper, ``scale(full=..., quick=...)``, so the
switch lives in one place.
"""
from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")

# When `import mmtutorial` ran: a chapter's set-up cell, so run_footer() can report the notebook's wall time.
IMPORTED_AT = time.perf_counter()

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
    for part in parts:
        # joinpath("/etc") would leave the cache altogether, and ".." would climb out of it
        if not isinstance(part, str) or not part or Path(part).is_absolute() or ".." in Path(part).parts:
            raise ValueError(f"cache_dir() wants relative folder names inside the cache, like cache_dir('models'), "
                             f"got {part!r}")
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "mmtutorial")
    path = Path(root).expanduser().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise NotADirectoryError(f"the mmtutorial cache needs the folder {path}, but a file is in the way "
                                 f"({error.filename}); remove it or point {CACHE_ENV} elsewhere") from error
    return path


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or ``MMTUTORIAL_DEVICE``) forces one, e.g. ``"cpu"`` for reproducible numbers.
    """
    if prefer is not None and not isinstance(prefer, (str, torch.device)):
        raise TypeError(f"prefer must be a device name like 'cpu' or 'cuda:0', got {type(prefer).__name__}")
    choice = prefer or os.environ.get(DEVICE_ENV)
    if choice:
        try:
            device = torch.device(choice)
        except RuntimeError as error:           # torch says only "Invalid device string"
            source = "prefer" if prefer else DEVICE_ENV
            raise ValueError(f"{source}={choice!r} is not a device; expected 'cpu', 'cuda', 'cuda:0' or 'mps'") \
                from error
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


# What run_footer() prints; tests/test_site_browser.py looks for it on every executed chapter page.
RUN_FOOTER_PATTERN = re.compile(r"Produced by this run: (full|QUICK) mode on (\S+)[^,]*, ([\d.]+) s of wall time, "
                                r"mmtutorial (\S+), torch (\S+), Python (\d+(?:\.\d+)*)")


def run_footer(device: torch.device | str | None = None) -> str:
    """The last line of every chapter: the run that produced the page's numbers.

    Mode (full or QUICK), device (with the GPU's name on CUDA), the notebook's wall time and the versions
    of mmtutorial, torch and Python. The wall time counts from ``import mmtutorial`` (the chapter's set-up
    cell) to this call, so it is the time the reader would wait, less the kernel's start. The chapters
    print it from a last cell that scripts/add_run_footer.py appends (its input hidden on the website).
    """
    if device is not None and not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a torch.device or a name like 'cpu', got {type(device).__name__}")
    device = torch.device(device) if device is not None else get_device()
    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    else:
        threads = torch.get_num_threads()
        where += f" ({threads} thread{'s' if threads != 1 else ''})"
    seconds = time.perf_counter() - IMPORTED_AT
    package = sys.modules.get(__package__ or "mmtutorial")   # the package is imported by now; no cycle
    version = getattr(package, "__version__", "unknown")
    return (f"Produced by this run: {mode_name()} mode on {where}, {seconds:.1f} s of wall time, "
            f"mmtutorial {version}, torch {torch.__version__}, Python {platform.python_version()}.")
