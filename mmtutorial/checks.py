"""One validator per kind of input: token ids, images, waveforms.

Every model and function of the package that takes one of these calls the validator here, so a wrong
input gets the same clear error everywhere: a ``TypeError`` for the wrong type or dtype, a ``ValueError``
for the wrong shape or values, each naming what was expected and what came.

Value checks never force a device synchronisation: on the CPU the values are checked at once (a
``ValueError``); on an accelerator the range check is queued with ``torch._assert_async`` (it fails at
the next synchronisation instead of reading the tensor back on every forward pass).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_token_ids", "check_images", "check_waveform", "describe"]


def describe(value) -> str:
    """A short description of ``value`` for an error message: a tensor's shape and dtype, else its type."""
    if isinstance(value, (Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def check_token_ids(ids, vocab_size: int, *, name: str = "token ids", max_len: int | None = None,
                    start: int = 0, allow_empty: bool = False) -> Tensor:
    """Token ids must be an integer tensor (batch, seq) with values in [0, vocab_size).

    ``max_len``: the longest sequence the model has positions for; ``start`` tokens are already in a KV
    cache, so ``start + seq`` must not exceed it.  ``allow_empty``: whether seq = 0 is acceptable.
    Returns ``ids`` unchanged.
    """
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise TypeError(f"vocab_size must be a positive int, got {type(vocab_size).__name__} {vocab_size!r}")
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer token ids (batch, seq), got {describe(ids)}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"{name} must hold integer token ids (torch.long), got dtype {ids.dtype}")
    if ids.dim() != 2:
        hint = " (add a batch dimension with ids[None])" if ids.dim() == 1 else ""
        raise ValueError(f"{name} must have shape (batch, seq), got {tuple(ids.shape)}{hint}")
    if ids.size(1) == 0 and not allow_empty:
        raise ValueError(f"{name} must hold at least one token per sequence, got shape {tuple(ids.shape)}")
    if max_len is not None and start + ids.size(1) > max_len:
        raise ValueError(f"{name}: a sequence of length {start + ids.size(1)} is longer than max_seq_len="
                         f"{max_len}; crop it to the last {max_len} tokens")
    if ids.numel():
        if ids.device.type == "cpu":
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= vocab_size:
                raise ValueError(f"{name} must be in [0, vocab_size={vocab_size}), got values in [{low}, {high}]")
        else:  # queued on the device: no read-back, so no synchronisation on every forward pass
            torch._assert_async(((ids >= 0) & (ids < vocab_size)).all(),
                                f"{name} must be in [0, vocab_size={vocab_size})")
    return ids


def check_images(images, *, channels: int | None = None, size: int | tuple[int, int] | None = None,
                 name: str = "images", divisible_by: int | None = None, finite: bool = True) -> Tensor:
    """Images must be a floating-point tensor (batch, channels, height, width).

    ``channels``/``size`` (an int for square images, or (height, width)): what the model was built for.
    ``divisible_by``: a patch size that must tile the image (said in the error when it does not).
    ``finite``: refuse NaN and infinite values (checked on the CPU only, where it costs no synchronisation);
    tensor operations that pad with -inf themselves (max pooling) pass ``finite=False``.
    Returns ``images`` unchanged.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (batch, channels, height, width), got {describe(images)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {images.dtype}; convert uint8 "
                        "pixels with x.float() / 255 (then normalise as the model expects)")
    if images.dim() != 4:
        hint = " (add a batch dimension with x[None])" if images.dim() == 3 else ""
        raise ValueError(f"{name} must be 4-D (batch, channels, height, width), got shape "
                         f"{tuple(images.shape)}{hint}")
    if finite and images.device.type == "cpu" and images.numel() and not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} hold NaN or infinite values ({int((~torch.isfinite(images)).sum())} of "
                         f"{images.numel()}): expected finite pixel values")
    height, width = images.shape[-2:]
    expected = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    if channels is not None and images.size(1) != channels:
        spatial = "height, width" if expected is None else f"{expected[0]}, {expected[1]}"
        raise ValueError(f"{name} have {images.size(1)} channels, expected {channels} (shape (batch, {channels}, "
                         f"{spatial})), got shape {tuple(images.shape)}")
    if expected is not None:
        if (height, width) != expected:
            extra = ""
            if divisible_by and (height % divisible_by or width % divisible_by):
                extra = f"; {height} x {width} is not even divisible by patch_size={divisible_by}"
            raise ValueError(f"{name} are {height} x {width} pixels, the model was built for {expected[0]} x "
                             f"{expected[1]} (expected shape (batch, {images.size(1)}, {expected[0]}, {expected[1]}), "
                             f"got {tuple(images.shape)}){extra}. Resize them first.")
    return images


def check_waveform(x, name: str = "waveform") -> Tensor:
    """A mono float waveform (time,) or (batch, time), as a tensor (numpy arrays are converted).

    Clear errors for the usual mistakes: int16 PCM, stereo (batch, channels, time) or (time, channels)
    arrays, NaN or infinite samples (checked on the CPU only, where it costs no synchronisation).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {describe(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point (float32/float64 samples in [-1, 1]), got {x.dtype}; "
                        "convert int16 PCM with x.float() / 32768")
    if x.ndim == 3:
        raise ValueError(f"{name} must be mono, shaped (time,) or (batch, time); got {tuple(x.shape)} which "
                         f"looks like (batch, channels={x.shape[1]}, time): average the channels first, "
                         "x.mean(dim=1)")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (time,) or (batch, time), got {tuple(x.shape)}")
    if x.ndim == 2 and x.shape[-1] in (1, 2) and x.shape[0] > x.shape[-1]:
        raise ValueError(f"{name} of shape {tuple(x.shape)} looks like (time, channels) audio (as soundfile "
                         "returns stereo); expected mono (time,) or (batch, time): use x.mean(dim=1)")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} is empty: expected at least one sample, got shape {tuple(x.shape)}")
    if x.device.type == "cpu" and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or infinite samples ({int((~torch.isfinite(x)).sum())} of "
                         f"{x.numel()}): expected finite samples in [-1, 1]")
    return x
