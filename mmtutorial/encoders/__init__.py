"""Unimodal encoders, one readable file per modality (``text``, ``vision``, ``audio``), imported on first use."""
from __future__ import annotations

import importlib

_SUBMODULES = {"text", "vision", "audio", "pretrained"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mmtutorial.encoders' has no attribute {name!r}")
