"""Complete models, one readable file each (``gpt``, ``bert``, ...), imported on first use."""
from __future__ import annotations

import importlib

_SUBMODULES = {"gpt", "bert", "vit", "clip", "fusion"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mmtutorial.models' has no attribute {name!r}")
