"""Unimodal encoders, one readable file per modality (``text``, ``vision``, ``audio``), imported on first use."""
from __future__ import annotations

from ..utils import lazy_submodules

_SUBMODULES = {"text", "vision", "audio"}


__getattr__ = lazy_submodules(__name__, _SUBMODULES)
