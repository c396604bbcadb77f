"""Spoken digits "zero" … "nine", synthesised offline with espeak-ng over many voices, speeds and pitches.

A *voice* is an espeak-ng accent plus a speaker variant (``en-gb-scotland+f2``): the accent changes the
pronunciation, the variant the timbre (formants, pitch range, breathiness).  Every (voice, speed, pitch,
digit) combination is one utterance, so the labels are exact.

Pipeline per utterance: ``espeak-ng --stdout`` (22,050 Hz, 16-bit mono WAV) → standard-library ``wave``
→ float in [-1, 1] → polyphase resampling to 16 kHz → silence trimmed (frames more than ``TRIM_TOP_DB``
below the loudest) → centred in a fixed window of ``CLIP_SECONDS`` (zero padding, or a centre crop).

The whole set is cached as one ``.npz`` (int16 audio + a manifest) under
``mmt.cache_dir("datasets", "spoken_digits")``; the file name holds a key hashed from the generator
version, the settings and the espeak-ng version, so any change regenerates it.  :func:`split_by_voice`
holds out whole voices: no test voice is ever heard in training.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..checkpoint import atomic_write
from ..config import cache_dir, is_quick
from . import DataNotFoundError
from .audio import resample

__all__ = ["DIGITS", "ACCENTS", "VARIANTS", "SPEEDS", "PITCHES", "SAMPLE_RATE", "SpokenDigits",
           "espeak_available", "synthesize", "load_spoken_digits", "split_by_voice"]

GENERATOR_VERSION = 1
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# espeak-ng's English accents (``espeak-ng --voices=en``, the built-in ones; mbrola voices need extra packages).
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
# Speaker variants (``espeak-ng --voices=variant``): male m1–m7, female f1–f5.
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPEEDS = (130, 170, 210)            # words per minute (espeak-ng -s; its default is 175)
PITCHES = (30, 50, 70)              # 0–99 (espeak-ng -p; default 50)
SAMPLE_RATE = 16000                 # Hz after resampling
ESPEAK_RATE = 22050                 # Hz espeak-ng writes
CLIP_SECONDS = 1.0                  # fixed length of every utterance
TRIM_TOP_DB = 40.0                  # silence = 10 ms frames this far below the loudest frame
ESPEAK_HELP = ("espeak-ng is missing; the spoken digits are synthesised with it. Install it with "
               "`sudo apt-get install espeak-ng` (Debian/Ubuntu), `brew install espeak-ng` (macOS) "
               "or, in Colab, `!apt-get install -y espeak-ng`.")


@dataclass
class SpokenDigits:
    """Utterances (n, samples) as float32 in [-1, 1], labels (n,) int64 and one manifest row per utterance."""
    audio: np.ndarray
    labels: np.ndarray
    voices: np.ndarray                  # (n,) str, "accent+variant"
    speeds: np.ndarray                  # (n,) int, words per minute
    pitches: np.ndarray                 # (n,) int
    sample_rate: int = SAMPLE_RATE
    classes: tuple[str, ...] = field(default=DIGITS)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "SpokenDigits":
        indices = np.asarray(indices)
        return SpokenDigits(self.audio[indices], self.labels[indices], self.voices[indices],
                            self.speeds[indices], self.pitches[indices], self.sample_rate, self.classes)

    def manifest(self) -> list[dict]:
        """One dict per utterance: voice, speed, pitch, digit (word) and label."""
        return [{"voice": str(v), "speed": int(s), "pitch": int(p), "digit": self.classes[y], "label": int(y)}
                for v, s, p, y in zip(self.voices, self.speeds, self.pitches, self.labels)]

    def tensors(self):
        """(audio float32 tensor (n, samples), labels int64 tensor (n,)) for ``mmt.training.fit``."""
        import torch
        return torch.from_numpy(np.ascontiguousarray(self.audio)), torch.from_numpy(self.labels)

    def __repr__(self) -> str:
        return (f"SpokenDigits({len(self)} utterances, {len(np.unique(self.voices))} voices, "
                f"{self.audio.shape[1] / self.sample_rate:.2f} s at {self.sample_rate} Hz)")


# --------------------------------------------------------------------------------------------------
# Synthesis of one utterance
# --------------------------------------------------------------------------------------------------
def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _espeak_version() -> str:
    result = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=30)
    return result.stdout.strip()


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono PCM WAV bytes → float64 samples in [-1, 1] and the sample rate.

    ``--stdout`` cannot seek back to fix the header's length field, so read whatever data follows it.
    """
    with wave.open(io.BytesIO(data)) as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1:
            raise ValueError(f"expected 16-bit mono WAV from espeak-ng, got {8 * handle.getsampwidth()}-bit "
                             f"with {handle.getnchannels()} channels")
        rate = handle.getframerate()
        frames = handle.readframes(handle.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0, rate


def trim_silence(x: np.ndarray, top_db: float = TRIM_TOP_DB, frame: int = 160) -> np.ndarray:
    """Drop leading and trailing 10 ms frames whose RMS is more than ``top_db`` below the loudest frame."""
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)    # (n_frames,)
    db = 20 * np.log10(rms / rms.max())
    loud = np.flatnonzero(db > -top_db)
    return x[loud[0] * frame: (loud[-1] + 1) * frame]


def fix_length(x: np.ndarray, length: int) -> np.ndarray:
    """Centre ``x`` in ``length`` samples: zero padding on both sides, or a centre crop."""
    if len(x) >= length:
        start = (len(x) - length) // 2
        return x[start: start + length]
    left = (length - len(x)) // 2
    return np.pad(x, (left, length - len(x) - left))


def synthesize(word: str, voice: str = "en-us", speed: int = 175, pitch: int = 50,
               sample_rate: int = SAMPLE_RATE, clip_seconds: float | None = CLIP_SECONDS) -> np.ndarray:
    """Speak ``word`` with espeak-ng and return float64 samples at ``sample_rate`` (trimmed, fixed length).

    ``clip_seconds=None`` keeps the trimmed length.  Raises :class:`DataNotFoundError` without espeak-ng.
    """
    if not espeak_available():
        raise DataNotFoundError(ESPEAK_HELP)
    result = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                            capture_output=True, timeout=60)
    if result.returncode != 0 or len(result.stdout) <= 44:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {result.stderr.decode(errors='replace')}")
    samples, rate = _read_wav(result.stdout)
    samples = trim_silence(resample(samples, rate, sample_rate))
    if clip_seconds is not None:
        samples = fix_length(samples, int(round(clip_seconds * sample_rate)))
    return samples


# --------------------------------------------------------------------------------------------------
# The data set: generate once, cache, split by voice
# --------------------------------------------------------------------------------------------------
def _grid(accents, variants, speeds, pitches, styles_per_voice, seed):
    """Utterance settings: every voice says every digit in ``styles_per_voice`` (speed, pitch) styles,
    drawn without replacement from speeds × pitches by a generator seeded per voice (deterministic)."""
    styles = [(s, p) for s in speeds for p in pitches]
    if not 1 <= styles_per_voice <= len(styles):
        raise ValueError(f"styles_per_voice must be in [1, {len(styles)}], got {styles_per_voice}")
    jobs = []
    for accent in accents:
        for variant in variants:
            voice = f"{accent}+{variant}"
            digest = hashlib.sha256(f"{seed}:{voice}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            for index in sorted(rng.choice(len(styles), styles_per_voice, replace=False)):
                speed, pitch = styles[index]
                for label in range(len(DIGITS)):
                    jobs.append((voice, speed, pitch, label))
    return jobs


def load_spoken_digits(accents=None, variants=None, speeds=SPEEDS, pitches=PITCHES,
                       styles_per_voice: int | None = None, seed: int = 0, workers: int = 2,
                       regenerate: bool = False, verbose: bool = True) -> SpokenDigits:
    """The spoken-digit set, generated with espeak-ng on first use and then read from the cache.

    Defaults: full mode uses all 8 accents × 12 variants (96 voices) × 2 styles × 10 digits = 1,920
    utterances (~15 s to generate on 2 cores); QUICK mode 4 accents × 6 variants (24 voices) × 2 styles
    × 10 digits = 480.
    """
    quick = is_quick()
    accents = tuple(accents or (ACCENTS[:4] if quick else ACCENTS))
    variants = tuple(variants or (VARIANTS[:3] + VARIANTS[7:10] if quick else VARIANTS))
    styles_per_voice = styles_per_voice or 2
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not espeak_available():
        raise DataNotFoundError(ESPEAK_HELP)
    settings = {"generator": GENERATOR_VERSION, "accents": accents, "variants": variants,
                "speeds": list(speeds), "pitches": list(pitches), "styles": styles_per_voice, "seed": seed,
                "sample_rate": SAMPLE_RATE, "clip_seconds": CLIP_SECONDS, "trim_top_db": TRIM_TOP_DB,
                "espeak": _espeak_version()}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("datasets", "spoken_digits") / f"spoken_digits-{key}.npz"
    jobs = _grid(accents, variants, speeds, pitches, styles_per_voice, seed)
    if path.exists() and not regenerate:
        if verbose:
            print(f"Found spoken digits at {path}, loading")
        with np.load(path, allow_pickle=False) as stored:
            audio, manifest = stored["audio"], json.loads(str(stored["manifest"]))
    else:
        if verbose:
            print(f"Generating {len(jobs)} spoken digits with espeak-ng into {path}")
        with ThreadPoolExecutor(max_workers=workers) as pool:   # each job is a subprocess: threads suffice
            clips = list(pool.map(lambda job: synthesize(DIGITS[job[3]], job[0], job[1], job[2]), jobs))
        audio = np.round(np.stack(clips) * 32767).clip(-32768, 32767).astype(np.int16)   # (n, samples)
        manifest = {"settings": settings, "rows": [list(job) for job in jobs]}
        # Atomic, with a unique temporary name: two notebooks generating the same set at once cannot clash.
        atomic_write(path, lambda file: np.savez(file, audio=audio, manifest=np.array(json.dumps(manifest))))
    rows = manifest["rows"]
    return SpokenDigits(audio=audio.astype(np.float32) / 32768.0,
                        labels=np.array([row[3] for row in rows], dtype=np.int64),
                        voices=np.array([row[0] for row in rows]),
                        speeds=np.array([row[1] for row in rows], dtype=np.int64),
                        pitches=np.array([row[2] for row in rows], dtype=np.int64))


def split_by_voice(data: SpokenDigits, val_fraction: float = 0.15, test_fraction: float = 0.25,
                   seed: int = 0) -> tuple[SpokenDigits, SpokenDigits, SpokenDigits]:
    """Train / validation / test subsets with disjoint voices (a voice's utterances all go to one split).

    Voices are shuffled with ``seed`` and cut by count, so the split is deterministic.
    """
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {fraction}")
    voices = np.unique(data.voices)                               # sorted, so the order is reproducible
    if len(voices) < 3:
        raise ValueError(f"split_by_voice needs at least 3 voices, got {len(voices)}")
    order = np.random.default_rng(seed).permutation(voices)
    n_test = max(1, int(round(test_fraction * len(voices))))
    n_val = max(1, int(round(val_fraction * len(voices))))
    if n_test + n_val >= len(voices):
        raise ValueError(f"val_fraction + test_fraction leave no training voice ({len(voices)} voices)")
    test_voices, val_voices = set(order[:n_test]), set(order[n_test:n_test + n_val])
    in_test = np.isin(data.voices, list(test_voices))
    in_val = np.isin(data.voices, list(val_voices))
    return (data.subset(np.flatnonzero(~in_test & ~in_val)), data.subset(np.flatnonzero(in_val)),
            data.subset(np.flatnonzero(in_test)))
