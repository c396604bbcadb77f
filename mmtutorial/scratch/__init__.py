"""From-scratch NumPy code of Part 1: activations, losses, a scalar autograd, an MLP with hand-written
backprop, gradient checking and optimisers.  Each piece is tested against PyTorch in ``tests/``."""
from __future__ import annotations

import importlib

_SUBMODULES = {"activations", "losses", "autograd", "mlp", "gradcheck", "optim"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mmtutorial.scratch' has no attribute {name!r}")
