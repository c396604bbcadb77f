"""mmtutorial: the companion package of "Multimodal Large Models: Principles and Practice".

Notebooks build each idea from scratch to teach it, then use the tested version kept here.
Sub-modules (``mmt.training``, ``mmt.data``, ``mmt.metrics``, ...) are imported on first use so that
``import mmtutorial as mmt`` stays fast.
"""
from __future__ import annotations

from .config import cache_dir, describe_run, get_device, is_quick, mode_name, scale
from .utils import Timer, count_parameters, lazy_submodules, seed_everything

__version__ = "0.1.0"

_SUBMODULES = {"checkpoint", "data", "doctor", "exercises", "metrics", "models", "nn", "encoders", "scratch", "tokenizers", "interop", "retrieval", "widgets", "training", "viz"}


__getattr__ = lazy_submodules(__name__, _SUBMODULES)


__all__ = ["cache_dir", "describe_run", "get_device", "is_quick", "mode_name", "scale", "Timer",
           "count_parameters", "seed_everything", *sorted(_SUBMODULES)]
