"""Complete models, one readable file each (``gpt``, ``bert``, ...), imported on first use."""
from __future__ import annotations

from ..utils import lazy_submodules

_SUBMODULES = {"gpt", "bert", "vit", "clip", "fusion", "captioner", "vlm", "detector", "mae", "binding", "video"}


__getattr__ = lazy_submodules(__name__, _SUBMODULES)
