"""Audio front ends from scratch: framing, windows, DFT/STFT, the mel scale, log-mel, MFCC, and an audio CNN.

The pipeline from a waveform x[n] sampled at ``sample_rate`` Hz to MFCCs:

    frames    x_t[n] = x[t·H + n] · w[n]                    n = 0..N-1 (N = n_fft, H = hop_length)
    DFT       X_t[k] = Σ_n x_t[n] e^{-2πi kn/N}             k = 0..N/2 (real input: one-sided spectrum)
    power     P_t[k] = |X_t[k]|²
    mel       M_t[m] = Σ_k F[m, k] P_t[k]                   F: triangular filters equally spaced in mel
    log       L_t[m] = 10 log10(max(M_t[m], amin))          (dB, clipped to top_db below the maximum)
    DCT-II    c_t[q] = Σ_m D[q, m] L_t[m]                   orthonormal DCT, keep q = 0..12

Every function works on torch tensors of any floating dtype (use float64 to compare with references) and
on a single signal ``(time,)`` or a batch ``(batch, time)``.  Conventions follow ``torch.stft`` and
librosa: periodic Hann window, frames centred with ``n_fft // 2`` samples of padding when ``center=True``.
The padding mode differs between them: ``torch.stft`` defaults to ``"reflect"``, librosa (≥ 0.10) to
``"constant"`` (zeros); we default to librosa's ``"constant"`` and take ``pad_mode`` to match either.

:class:`LogMel` wraps the front end as an ``nn.Module``; :class:`AudioCNN` is a small spoken-word
classifier on top of it whose :meth:`AudioCNN.embed` gives a fixed-size vector for later chapters.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_waveform
from ..data.audio import resample  # raw-audio handling lives with the data; re-exported for the chapters
from ..nn import conv_stack

__all__ = [
    "hann_window", "frame_signal", "num_frames", "dft_matrix", "dft", "stft", "power_spectrogram",
    "hz_to_mel", "mel_to_hz", "mel_frequencies", "mel_filterbank", "power_to_db", "log_mel_spectrogram",
    "dct_matrix", "mfcc", "mfcc_tokens", "log_frame_energy", "resample", "check_sample_rate",
    "LogMel", "AudioCNNConfig", "SpectrogramCNN", "AudioCNN",
]


# --------------------------------------------------------------------------------------------------
# Input checks: the mistakes people make with audio arrays
# --------------------------------------------------------------------------------------------------
def _check_positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_sample_rate(expected: int, received: int) -> None:
    """Raise ``ValueError`` when audio at ``received`` Hz is fed to something built for ``expected`` Hz.

    A 16 kHz model fed 22,050 Hz audio sees every frequency scaled by 16000/22050 and every duration
    stretched: resample first (:func:`resample`).
    """
    if int(received) != int(expected):
        raise ValueError(f"expected audio sampled at {expected} Hz, received {received} Hz: resample it first, "
                         f"e.g. mmtutorial.encoders.audio.resample(x, {received}, {expected})")


# --------------------------------------------------------------------------------------------------
# Framing, window, DFT
# --------------------------------------------------------------------------------------------------
def hann_window(length: int, periodic: bool = True, dtype: torch.dtype = torch.float64) -> Tensor:
    """Hann window w[n] = 0.5 − 0.5 cos(2πn / M), n = 0..length-1.

    periodic (torch and librosa's default for spectra): M = length, i.e. one sample of a length+1 window
    is dropped so that overlapping windows sum to a constant; symmetric (filter design): M = length − 1.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    if length == 1:
        return torch.ones(1, dtype=dtype)
    period = length if periodic else length - 1
    n = torch.arange(length, dtype=dtype)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * n / period)


def num_frames(num_samples: int, frame_length: int, hop_length: int, center: bool = False) -> int:
    """Frames of ``frame_length`` every ``hop_length`` samples: 1 + ⌊(T − N) / H⌋ (T += 2·⌊N/2⌋ if centred).

    20 s at 16 kHz, 25 ms (400-sample) windows every 10 ms (160 samples), center=False: 1 + ⌊319,600/160⌋ = 1,998.
    """
    total = num_samples + (2 * (frame_length // 2) if center else 0)
    if total < frame_length:
        raise ValueError(f"a signal of {num_samples} samples is shorter than one frame of {frame_length} samples "
                         f"(n_fft > signal length); pad it or use a smaller n_fft")
    return 1 + (total - frame_length) // hop_length


def frame_signal(x: Tensor, frame_length: int, hop_length: int) -> Tensor:
    """Cut (..., time) into overlapping frames (..., n_frames, frame_length) (a view, no copy)."""
    if frame_length < 1 or hop_length < 1:
        raise ValueError(f"frame_length and hop_length must be >= 1, got {frame_length} and {hop_length}")
    if x.shape[-1] < frame_length:
        raise ValueError(f"the signal has {x.shape[-1]} samples, fewer than frame_length={frame_length} "
                         "(n_fft > signal length); pad it or use a smaller n_fft")
    return x.unfold(-1, frame_length, hop_length)                     # (..., n_frames, frame_length)


def dft_matrix(n_fft: int, dtype: torch.dtype = torch.complex128) -> Tensor:
    """One-sided DFT matrix W[k, n] = exp(−2πi·k·n / N), k = 0..N/2: shape (n_fft // 2 + 1, n_fft).

    For real input the bins k > N/2 are complex conjugates of N − k, so they carry nothing new.
    """
    real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32
    k = torch.arange(n_fft // 2 + 1)[:, None]                        # (n_freqs, 1)
    n = torch.arange(n_fft)[None, :]                                 # (1, n_fft)
    # Reduce k·n mod N in integers first: keeps the angle small, so float32 stays accurate for large N.
    angle = -2 * math.pi * ((k * n) % n_fft).to(real_dtype) / n_fft  # (n_freqs, n_fft)
    return torch.polar(torch.ones_like(angle), angle).to(dtype)


def dft(frames: Tensor, use_fft: bool = True) -> Tensor:
    """One-sided DFT of real frames (..., n_fft) -> (..., n_fft // 2 + 1), as an FFT or a matrix product.

    The matrix product X = x Wᵀ costs O(N²) per frame; the FFT computes the same numbers in O(N log N).
    """
    if use_fft:
        return torch.fft.rfft(frames, dim=-1)
    complex_dtype = torch.complex128 if frames.dtype == torch.float64 else torch.complex64
    matrix = dft_matrix(frames.shape[-1], complex_dtype).to(frames.device)   # (n_freqs, n_fft)
    return frames.to(complex_dtype) @ matrix.T                               # (..., n_freqs)


# --------------------------------------------------------------------------------------------------
# STFT and power spectrogram
# --------------------------------------------------------------------------------------------------
def stft(x, n_fft: int = 400, hop_length: int | None = None, win_length: int | None = None,
         window: Tensor | None = None, center: bool = True, pad_mode: str = "constant",
         use_fft: bool = True) -> Tensor:
    """Short-time Fourier transform, laid out like ``torch.stft(..., return_complex=True)``.

    Args:
        x: waveform (time,) or (batch, time), floating point.
        n_fft: DFT size N; hop_length: H (default N // 4, as torch and librosa).
        win_length: window length ≤ N (default N); a shorter window is zero-padded on both sides to N.
        window: (win_length,) tensor (default: periodic Hann).
        center: pad ⌊N/2⌋ samples on both sides so that frame t is centred on sample t·H.
        pad_mode: "constant" (zeros, librosa's default) or "reflect" (torch.stft's default).
    Returns:
        complex tensor (..., n_fft // 2 + 1, n_frames).
    """
    x = check_waveform(x)
    _check_positive_int("n_fft", n_fft)
    # None means "the default"; 0 is a mistake, not a request for the default.
    hop_length = n_fft // 4 if hop_length is None else _check_positive_int("hop_length", hop_length)
    win_length = n_fft if win_length is None else _check_positive_int("win_length", win_length)
    if hop_length < 1:
        raise ValueError(f"n_fft={n_fft} is too small for the default hop_length n_fft // 4: pass hop_length")
    if win_length > n_fft:
        raise ValueError(f"win_length must be <= n_fft, got win_length={win_length} and n_fft={n_fft}")
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
    if window is None:
        window = hann_window(win_length, periodic=True, dtype=x.dtype)
    if window.shape != (win_length,):
        raise ValueError(f"window must have shape ({win_length},), got {tuple(window.shape)}")
    window = window.to(device=x.device, dtype=x.dtype)
    left = (n_fft - win_length) // 2
    window = F.pad(window, (left, n_fft - win_length - left))                 # (n_fft,)
    if center:
        if pad_mode == "reflect" and x.shape[-1] <= n_fft // 2:
            raise ValueError(f"reflect padding needs more than n_fft // 2 = {n_fft // 2} samples, "
                             f"got {x.shape[-1]}")
        # F.pad's reflect mode wants a (batch, channel, time) tensor.
        x = F.pad(x.reshape(-1, 1, x.shape[-1]), (n_fft // 2, n_fft // 2), mode=pad_mode).reshape(
            *x.shape[:-1], -1)                                               # (..., time + 2·⌊N/2⌋)
    frames = frame_signal(x, n_fft, hop_length) * window                      # (..., n_frames, n_fft)
    spectrum = dft(frames, use_fft=use_fft)                                   # (..., n_frames, n_freqs)
    return spectrum.transpose(-1, -2)                                         # (..., n_freqs, n_frames)


def power_spectrogram(x, n_fft: int = 400, hop_length: int | None = None, power: float = 2.0,
                      **stft_kwargs) -> Tensor:
    """|STFT|^power: power=2 gives the power spectrogram, power=1 the magnitude. (..., n_freqs, n_frames)."""
    return stft(x, n_fft, hop_length, **stft_kwargs).abs() ** power


# --------------------------------------------------------------------------------------------------
# The mel scale and the mel filterbank
# --------------------------------------------------------------------------------------------------
_SLANEY_F_SP = 200.0 / 3                      # Hz per mel below 1 kHz (linear part)
_SLANEY_MIN_LOG_HZ = 1000.0                   # where the log part starts
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP   # = 15 mel
_SLANEY_LOGSTEP = math.log(6.4) / 27.0        # 27 mel per factor 6.4 in frequency


def hz_to_mel(frequencies, htk: bool = False):
    """Hz → mel.  HTK: m = 2595·log10(1 + f/700).  Slaney (librosa's default): linear f/(200/3) below
    1 kHz, then logarithmic, 15 + ln(f/1000)/(ln 6.4/27).  Works on floats, numpy arrays and tensors."""
    is_tensor = isinstance(frequencies, Tensor)
    f = frequencies if is_tensor else np.asarray(frequencies, dtype=np.float64)
    lib = torch if is_tensor else np
    if htk:
        return 2595.0 * lib.log10(1.0 + f / 700.0)
    linear = f / _SLANEY_F_SP
    logarithmic = _SLANEY_MIN_LOG_MEL + lib.log(lib.clip(f, _SLANEY_MIN_LOG_HZ, None) / _SLANEY_MIN_LOG_HZ) \
        / _SLANEY_LOGSTEP
    return lib.where(f >= _SLANEY_MIN_LOG_HZ, logarithmic, linear)


def mel_to_hz(mels, htk: bool = False):
    """mel → Hz, the inverse of :func:`hz_to_mel` (same two scales)."""
    is_tensor = isinstance(mels, Tensor)
    m = mels if is_tensor else np.asarray(mels, dtype=np.float64)
    lib = torch if is_tensor else np
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = _SLANEY_F_SP * m
    logarithmic = _SLANEY_MIN_LOG_HZ * lib.exp(_SLANEY_LOGSTEP * (lib.clip(m, _SLANEY_MIN_LOG_MEL, None)
                                                                 - _SLANEY_MIN_LOG_MEL))
    return lib.where(m >= _SLANEY_MIN_LOG_MEL, logarithmic, linear)


def mel_frequencies(n_points: int, fmin: float, fmax: float, htk: bool = False) -> np.ndarray:
    """``n_points`` frequencies (Hz) equally spaced on the mel scale from fmin to fmax."""
    mels = np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_points)
    return mel_to_hz(mels, htk)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 40, fmin: float = 0.0,
                   fmax: float | None = None, htk: bool = False, norm: str | None = "slaney",
                   dtype: torch.dtype = torch.float64) -> Tensor:
    """Triangular mel filters F of shape (n_mels, n_fft // 2 + 1), the same matrix as ``librosa.filters.mel``.

    Filter m rises linearly from f_m to f_{m+1} and falls back to 0 at f_{m+2}, where f_0..f_{n_mels+1} are
    equally spaced in mel.  norm="slaney" scales filter m by 2 / (f_{m+2} − f_m) so every filter has the
    same area (constant energy per channel); norm=None leaves peaks at 1.
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_positive_int("n_fft", n_fft)
    _check_positive_int("n_mels", n_mels)
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2 = {sample_rate / 2}, got fmin={fmin}, "
                         f"fmax={fmax}")
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)          # (n_freqs,) bin centres in Hz
    edges = mel_frequencies(n_mels + 2, fmin, fmax, htk)                       # (n_mels + 2,)
    widths = np.diff(edges)                                                    # (n_mels + 1,)
    offsets = edges[:, None] - fft_freqs[None, :]                              # (n_mels + 2, n_freqs)
    rising = -offsets[:-2] / widths[:-1, None]                                 # (n_mels, n_freqs)
    falling = offsets[2:] / widths[1:, None]                                   # (n_mels, n_freqs)
    weights = np.maximum(0.0, np.minimum(rising, falling))                     # (n_mels, n_freqs)
    empty = np.flatnonzero(weights.max(axis=1) == 0)
    if empty.size:
        # librosa only warns here; an all-zero mel channel is a constant feature that silently carries nothing.
        raise ValueError(f"{empty.size} of {n_mels} mel filters are all zero (channels {empty[:8].tolist()}"
                         f"{' ...' if empty.size > 8 else ''}): n_fft={n_fft} gives {n_fft // 2 + 1} frequency bins "
                         f"{sample_rate / n_fft:.1f} Hz apart, too coarse for {n_mels} mel bands between {fmin:g} and "
                         f"{fmax:g} Hz. Use fewer mels or a larger n_fft.")
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights).to(dtype)


# --------------------------------------------------------------------------------------------------
# Log-mel spectrogram and MFCC
# --------------------------------------------------------------------------------------------------
def power_to_db(power: Tensor, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> Tensor:
    """10·log10(max(S, amin) / ref), then clipped to top_db below the maximum (as ``librosa.power_to_db``).

    The maximum is taken per example over the last two axes (mel, frame), so a batch gives the same
    numbers as one call per signal.
    """
    if amin <= 0 or ref <= 0:
        raise ValueError(f"amin and ref must be > 0, got amin={amin}, ref={ref}")
    db = 10.0 * torch.log10(power.clamp_min(amin)) - 10.0 * math.log10(max(amin, ref))
    if top_db is not None:
        if top_db < 0:
            raise ValueError(f"top_db must be >= 0 or None, got {top_db}")
        peak = db.amax(dim=(-2, -1), keepdim=True) if db.ndim >= 2 else db.max()
        db = torch.maximum(db, peak - top_db)
    return db


def log_mel_spectrogram(x, sample_rate: int, n_fft: int = 400, hop_length: int = 160,
                        win_length: int | None = None, n_mels: int = 40, fmin: float = 0.0,
                        fmax: float | None = None, htk: bool = False, norm: str | None = "slaney",
                        center: bool = True, pad_mode: str = "constant", power: float = 2.0,
                        top_db: float | None = 80.0) -> Tensor:
    """Log-mel spectrogram in dB: power_to_db(F · |STFT|^power).  (..., n_mels, n_frames).

    The defaults are speech settings at 16 kHz: 25 ms windows (400 samples) every 10 ms (160 samples).
    """
    x = check_waveform(x)
    spectrum = power_spectrogram(x, n_fft, hop_length, power=power, win_length=win_length, center=center,
                                 pad_mode=pad_mode)                            # (..., n_freqs, n_frames)
    filters = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm, dtype=x.dtype).to(x.device)
    mel = filters @ spectrum                                                   # (..., n_mels, n_frames)
    return power_to_db(mel, top_db=top_db)


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal DCT-II matrix D (n, n): D[q, m] = s_q · cos(π q (2m + 1) / (2n)), s_0 = √(1/n), s_q = √(2/n).

    D is orthogonal (D Dᵀ = I), so y = D x equals ``scipy.fft.dct(x, type=2, norm="ortho")``.
    """
    if n < 1:
        raise ValueError(f"DCT size must be >= 1, got {n}")
    q = torch.arange(n, dtype=dtype)[:, None]                                  # (n, 1)
    m = torch.arange(n, dtype=dtype)[None, :]                                  # (1, n)
    matrix = torch.cos(math.pi * q * (2 * m + 1) / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix


def mfcc(x, sample_rate: int, n_mfcc: int = 13, n_mels: int = 40, **log_mel_kwargs) -> Tensor:
    """Mel-frequency cepstral coefficients: the first ``n_mfcc`` orthonormal DCT-II coefficients of the
    log-mel spectrum of each frame.  (..., n_mfcc, n_frames); same as ``librosa.feature.mfcc`` with the
    same STFT and mel settings (dct_type=2, norm="ortho", lifter=0).

    The DCT decorrelates the log-mel channels; keeping ~13 coefficients keeps the smooth spectral
    envelope (vocal tract) and drops the fine structure (pitch harmonics).
    """
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc must be in [1, n_mels={n_mels}], got {n_mfcc}")
    log_mel = log_mel_spectrogram(x, sample_rate, n_mels=n_mels, **log_mel_kwargs)  # (..., n_mels, n_frames)
    basis = dct_matrix(n_mels, log_mel.dtype).to(log_mel.device)[:n_mfcc]     # (n_mfcc, n_mels)
    return basis @ log_mel                                                     # (..., n_mfcc, n_frames)


def mfcc_tokens(waveforms, sample_rate: int, n_mfcc: int = 13, segments: int = 10) -> Tensor:
    """MFCCs averaged over ``segments`` equal time spans: (n, samples) -> (n, segments, n_mfcc) float32 tokens.

    A word becomes a short sequence of tokens, each the mean MFCC vector of one time span (chapter 14's audio
    input; pass it as ``audio_transform`` to ``mmtutorial.data.paired.load_paired_digits``).
    """
    if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
        raise ValueError(f"segments must be an int >= 1, got {segments!r}")
    waveforms = check_waveform(waveforms).float()                           # float32 is 2x faster than float64
    if waveforms.dim() != 2:
        raise ValueError(f"waveforms must be a batch (n, samples), got shape {tuple(waveforms.shape)}")
    coefficients = mfcc(waveforms, sample_rate, n_mfcc=n_mfcc, n_mels=40)   # (n, n_mfcc, frames)
    pooled = F.adaptive_avg_pool1d(coefficients, segments)                  # (n, n_mfcc, segments)
    return pooled.transpose(1, 2).float().contiguous()                      # (n, segments, n_mfcc)


def log_frame_energy(x, n_fft: int = 400, hop_length: int = 160, center: bool = True,
                     pad_mode: str = "constant", amin: float = 1e-10) -> Tensor:
    """ln Σ_k |X_t[k]|² over the full DFT of each windowed frame: ONE number per frame (..., n_frames).

    This is what "MFCC = log Σ|DFT|²" actually computes: the log energy of the frame, not MFCCs.
    The sum runs over all N bins (the one-sided spectrum counted twice except DC and Nyquist), so by
    Parseval it equals ln(N · Σ_n x_t[n]²).
    """
    spectrum = power_spectrogram(x, n_fft, hop_length, center=center, pad_mode=pad_mode)  # (..., n_freqs, T)
    doubled = torch.ones(spectrum.shape[-2], dtype=spectrum.dtype, device=spectrum.device) * 2
    doubled[0] = 1
    if n_fft % 2 == 0:
        doubled[-1] = 1
    energy = (spectrum * doubled[:, None]).sum(dim=-2)                                     # (..., T)
    return torch.log(energy.clamp_min(amin))


# --------------------------------------------------------------------------------------------------
# nn.Module front end and a small spoken-word CNN
# --------------------------------------------------------------------------------------------------
class LogMel(nn.Module):
    """Waveform (batch, time) at ``sample_rate`` Hz → log-mel spectrogram (batch, n_mels, n_frames) in dB.

    The window and filterbank are buffers (they follow ``.to(device)`` and are not trained).
    ``forward(x, sample_rate=sr)`` refuses audio recorded at another rate instead of silently
    mis-reading its frequencies.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160, n_mels: int = 40,
                 fmin: float = 0.0, fmax: float | None = None, htk: bool = False, top_db: float | None = 80.0):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.top_db = sample_rate, n_fft, hop_length, top_db
        self.register_buffer("window", hann_window(n_fft, dtype=torch.float32), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk,
                                                       dtype=torch.float32), persistent=False)

    @property
    def n_mels(self) -> int:
        return self.filters.shape[0]

    def forward(self, waveform: Tensor, sample_rate: int | None = None) -> Tensor:
        if sample_rate is not None:
            check_sample_rate(self.sample_rate, sample_rate)
        waveform = check_waveform(waveform)
        power = stft(waveform, self.n_fft, self.hop_length, window=self.window.to(waveform.dtype)).abs() ** 2
        mel = self.filters.to(power.dtype) @ power                             # (batch, n_mels, n_frames)
        return power_to_db(mel, top_db=self.top_db)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
                f"n_mels={self.n_mels}")


@dataclass
class AudioCNNConfig:
    sample_rate: int = 16000                      # Hz the model expects (checked when given to forward)
    n_fft: int = 400                              # 25 ms analysis window at 16 kHz
    hop_length: int = 160                         # 10 ms hop → 101 frames per second
    n_mels: int = 40                              # mel channels of the front end
    channels: tuple[int, ...] = (8, 16, 32, 64)   # conv blocks (3×3 conv, BatchNorm, ReLU, 2×2 max-pool)
    num_classes: int = 10                         # output classes (spoken digits: 10)
    dropout: float = 0.1                          # dropout before the classifier
    freq_mask: int = 0                            # SpecAugment: max mel channels masked per example (training)
    time_mask: int = 0                            # SpecAugment: max frames masked per example (training)

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.n_mels < 2 ** len(self.channels):
            raise ValueError(f"n_mels={self.n_mels} is too small for {len(self.channels)} 2×2 poolings")


class SpectrogramCNN(nn.Module):
    """Log-mel spectrogram (batch, n_mels, n_frames) → per-utterance normalisation → conv blocks →
    global average pool (the embedding) → linear classifier.

    It has every trainable parameter of :class:`AudioCNN`; training it on log-mels computed once (the
    front end has nothing to learn) is the same as training the whole model on waveforms, only faster.
    """

    def __init__(self, config: AudioCNNConfig | None = None):
        super().__init__()
        self.config = config = config or AudioCNNConfig()
        # The log-mel image has one channel; each block: 3x3 conv, BatchNorm, ReLU, 2x2 max-pool.
        self.features = conv_stack(1, config.channels, batch_norm=True)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.channels[-1], config.num_classes)

    def _spec_augment(self, spec: Tensor) -> Tensor:
        """Mask one random band of mel channels and one of frames per example (SpecAugment, training only)."""
        batch, n_mels, n_frames = spec.shape
        for size, axis_len, axis in ((self.config.freq_mask, n_mels, 1), (self.config.time_mask, n_frames, 2)):
            if size <= 0:
                continue
            width = torch.randint(0, size + 1, (batch, 1), device=spec.device)             # (batch, 1)
            start = (torch.rand(batch, 1, device=spec.device) * (axis_len - width)).long()   # (batch, 1)
            position = torch.arange(axis_len, device=spec.device)[None, :]                  # (1, axis_len)
            mask = (position >= start) & (position < start + width)                         # (batch, axis_len)
            spec = spec.masked_fill(mask[:, :, None] if axis == 1 else mask[:, None, :], 0.0)
        return spec

    def embed(self, spec: Tensor) -> Tensor:
        """(batch, n_mels, n_frames) log-mel in dB → (batch, channels[-1])."""
        if spec.ndim != 3 or spec.shape[1] != self.config.n_mels:
            raise ValueError(f"expected a log-mel batch (batch, n_mels={self.config.n_mels}, n_frames), "
                             f"got shape {tuple(spec.shape)}")
        # Per-utterance standardisation: loudness and recording level should not matter.
        spec = (spec - spec.mean(dim=(1, 2), keepdim=True)) / (spec.std(dim=(1, 2), keepdim=True) + 1e-5)
        if self.training:
            spec = self._spec_augment(spec)
        hidden = self.features(spec[:, None])                                  # (batch, C, n_mels/2^k, T/2^k)
        return hidden.mean(dim=(2, 3))                                          # (batch, C)

    def forward(self, spec: Tensor) -> Tensor:
        return self.head(self.dropout(self.embed(spec)))                      # (batch, num_classes)


class AudioCNN(nn.Module):
    """Spoken-word classifier on raw audio: :class:`LogMel` front end + :class:`SpectrogramCNN` backbone.

    ``embed(waveform)`` returns the pooled (batch, embed_dim) vector, the audio embedding that later
    chapters fuse with other modalities; ``forward`` returns class logits (batch, num_classes).
    Both take ``sample_rate=`` to refuse audio at the wrong rate.
    """

    def __init__(self, config: AudioCNNConfig | None = None):
        super().__init__()
        self.config = config = config or AudioCNNConfig()
        self.front_end = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)
        self.backbone = SpectrogramCNN(config)

    @property
    def embed_dim(self) -> int:
        return self.config.channels[-1]

    def _log_mel(self, waveform: Tensor, sample_rate: int | None) -> Tensor:
        spec = self.front_end(waveform, sample_rate)                           # (batch, n_mels, n_frames)
        return spec[None] if spec.ndim == 2 else spec

    def embed(self, waveform: Tensor, sample_rate: int | None = None) -> Tensor:
        """(batch, time) waveform → (batch, embed_dim) audio embedding."""
        return self.backbone.embed(self._log_mel(waveform, sample_rate))

    def forward(self, waveform: Tensor, sample_rate: int | None = None) -> Tensor:
        return self.backbone(self._log_mel(waveform, sample_rate))            # (batch, num_classes)

    def config_dict(self) -> dict:
        return asdict(self.config)
