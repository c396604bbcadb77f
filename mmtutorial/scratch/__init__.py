"""From-scratch NumPy code of Part 1: activations, losses, a scalar autograd, an MLP with hand-written
backprop, gradient checking and optimisers.  Each piece is tested against PyTorch in ``tests/``."""
from __future__ import annotations

from ..utils import lazy_submodules

_SUBMODULES = {"activations", "losses", "autograd", "mlp", "gradcheck", "optim"}


__getattr__ = lazy_submodules(__name__, _SUBMODULES)
