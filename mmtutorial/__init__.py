"""mmtutorial: the companion package of "Multimodal Large Models: Principles and Practice".

Notebooks build each idea from scratch to teach it, then use the tested version kept here.
Sub-modules (``mmt.training``, ``mmt.data``, ``mmt.metrics``, ...) are imported on first use so that
``import mmtutorial as mmt`` stays fast.
"""
from __future__ import annotations

import importlib

from .config import cache_dir, describe_run, get_device, is_quick, mode_name, scale
from .utils import Timer, count_parameters, seed_everything

__version__ = "0.1.0"

_SUBMODULES = {"checkpoint", "data", "doctor", "exercises", "metrics", "models", "nn", "encoders", "scratch", "tokenizers", "interop", "retrieval", "widgets", "training", "viz"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mmtutorial' has no attribute {name!r}")


__all__ = ["cache_dir", "describe_run", "get_device", "is_quick", "mode_name", "scale", "Timer",
           "count_parameters", "seed_everything", *sorted(_SUBMODULES)]
