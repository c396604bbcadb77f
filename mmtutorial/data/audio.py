"""Raw audio handling that the data loaders need (no features: those are the encoders' business)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["resample"]


def resample(x, orig_sr: int, target_sr: int) -> np.ndarray | Tensor:
    """Polyphase resampling (``scipy.signal.resample_poly``) along the last axis; keeps numpy/torch type."""
    from scipy.signal import resample_poly

    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(f"{name} must be a positive int (samples per second), got {rate!r}")
    g = math.gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // g, int(orig_sr) // g
    if isinstance(x, Tensor):
        return torch.from_numpy(resample_poly(x.detach().cpu().numpy(), up, down, axis=-1)).to(x.dtype)
    return resample_poly(np.asarray(x), up, down, axis=-1)
