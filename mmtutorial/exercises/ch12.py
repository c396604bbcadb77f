"""Checkers for chapter 12 (Audio).

Each checker calls the learner's function on fixed inputs, compares it with the package version (itself
tested against librosa and scipy), raises :class:`ExerciseError` with a hint when it differs and prints
a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, check_close, passed, call_answer as _call, as_float64 as _as_numpy


def check_hz_to_mel_htk(hz_to_mel_htk: Callable) -> None:
    """``hz_to_mel_htk(frequencies) -> mels`` on a numpy array: m = 2595 · log10(1 + f / 700)."""
    from ..encoders.audio import hz_to_mel

    name = "hz_to_mel_htk"
    frequencies = np.array([0.0, 100.0, 700.0, 1000.0, 4000.0, 8000.0])
    expected = hz_to_mel(frequencies, htk=True)
    check_close(name, _as_numpy(_call(name, hz_to_mel_htk, frequencies)), expected, rtol=1e-9, atol=1e-9,
                hint="HTK: 2595 * log10(1 + f / 700); 1000 Hz is 1000 mel (Slaney's scale also maps 1 kHz to 15).")
    passed(name)


def check_dct_ii_ortho(dct_ii_ortho: Callable) -> None:
    """``dct_ii_ortho(n) -> (n, n) matrix`` D with D @ x == scipy.fft.dct(x, type=2, norm="ortho")."""
    from scipy.fft import dct

    name = "dct_ii_ortho"
    for n in (4, 13, 40):
        matrix = _as_numpy(_call(name, dct_ii_ortho, n))
        check_close(f"{name}({n})", matrix, dct(np.eye(n), type=2, norm="ortho", axis=0), rtol=1e-9, atol=1e-9,
                    hint="D[q, m] = s_q cos(pi q (2m + 1) / (2n)), s_0 = sqrt(1/n), s_q = sqrt(2/n) for q > 0.")
    passed(name)


def check_mfcc_size(mfcc_size: Callable) -> None:
    """``mfcc_size(seconds, sample_rate, window_ms, hop_ms, n_mfcc) -> (frames, values)`` without centring."""
    from ..encoders.audio import num_frames

    name = "mfcc_size"
    cases = [(20.0, 16000, 25.0, 10.0, 13), (1.0, 16000, 25.0, 10.0, 13), (3.0, 22050, 46.44, 11.61, 20),
             (0.5, 8000, 32.0, 16.0, 12)]
    for seconds, rate, window_ms, hop_ms, n_mfcc in cases:
        frame_length = int(round(window_ms * rate / 1000))
        hop_length = int(round(hop_ms * rate / 1000))
        frames = num_frames(int(round(seconds * rate)), frame_length, hop_length, center=False)
        got = _call(name, mfcc_size, seconds, rate, window_ms, hop_ms, n_mfcc)
        if got is None or len(tuple(got)) != 2:
            raise ExerciseError(f"{name}: return a pair (frames, values), got {got!r}")
        if tuple(int(v) for v in got) != (frames, frames * n_mfcc):
            raise ExerciseError(f"{name}{(seconds, rate, window_ms, hop_ms, n_mfcc)}: expected "
                                f"{(frames, frames * n_mfcc)}, got {tuple(got)}. Frames = 1 + (T - N) // H with "
                                "N and H rounded to whole samples.")
    passed(name)
