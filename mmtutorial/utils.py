"""Small helpers every chapter uses: seeding, parameter counts, timing, CPU threads."""
from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed Python, NumPy and PyTorch (all devices) so a CPU run gives the same numbers twice.

    ``deterministic=True`` also asks PyTorch for deterministic kernels (slower on GPU).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not -2**63 <= seed < 2**64:              # what torch.manual_seed accepts
        raise ValueError(f"seed must be in [-2**63, 2**64), got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # affects only subprocesses started after this
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once, as PyTorch's ``parameters()`` yields them)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters wants an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class Timer:
    """Wall-clock timer usable as a context manager::

        with Timer("epoch") as t:
            ...
        print(t)            # epoch: 1.23 s
    """
    name: str = "elapsed"
    start: float = field(default=0.0, init=False)
    seconds: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Timer name must be a str, got {type(self.name).__name__}")

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start

    def __str__(self) -> str:
        return f"{self.name}: {self.seconds:.2f} s"


@contextmanager
def cpu_threads(threads: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads when ``device`` is the CPU, then restore the setting.

    The book's tiny models gain nothing from splitting each small operation between threads, and on a busy
    2-core machine they lose a lot (measured for chapter 20's towers: 10 s with one thread, 56 s with two).
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    before = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def lazy_submodules(package: str, names: set[str]):
    """A module-level ``__getattr__`` for ``package`` that imports the submodules ``names`` on first use.

    ``import mmtutorial as mmt`` stays fast, yet ``mmt.training`` (or ``mmt.encoders.audio``) just works.
    """
    import importlib

    def __getattr__(name: str):
        if name in names:   # importing a submodule binds it on its package, so this runs once per name
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
