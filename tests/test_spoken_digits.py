"""mmtutorial.data.spoken_digits: ground truth, caching, determinism and the voice split.

Uses a tiny grid (2 accents x 2 variants x 1 style x 10 digits = 40 words, well under a second) in a
temporary cache; skipped where espeak-ng is not installed (except the missing-espeak error test).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtutorial.data import DataNotFoundError
from mmtutorial.data import spoken_digits as sd

needs_espeak = pytest.mark.skipif(not sd.espeak_available(), reason="espeak-ng is not installed")
TINY = dict(accents=("en-us", "en-gb-scotland"), variants=("m1", "f2"), styles_per_voice=1, verbose=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def tiny(cache):
    return sd.load_spoken_digits(**TINY)


@needs_espeak
def test_ground_truth(tiny):
    assert len(tiny) == 4 * 10
    assert np.all(np.bincount(tiny.labels, minlength=10) == 4)          # every voice says every digit once
    assert tiny.audio.shape == (40, sd.SAMPLE_RATE) and tiny.audio.dtype == np.float32
    assert sorted(set(tiny.voices)) == ["en-gb-scotland+f2", "en-gb-scotland+m1", "en-us+f2", "en-us+m1"]
    row = tiny.manifest()[0]
    assert set(row) == {"voice", "speed", "pitch", "digit", "label"} and row["digit"] == sd.DIGITS[row["label"]]
    assert row["speed"] in sd.SPEEDS and row["pitch"] in sd.PITCHES


@needs_espeak
def test_durations_plausible_and_voices_differ(tiny):
    # A spoken digit lasts 0.15-1 s; the clip is centred so both ends are silent padding.
    voiced = (np.abs(tiny.audio) > 1e-3).sum(axis=1) / sd.SAMPLE_RATE
    assert np.all(voiced > 0.1) and np.all(voiced < 1.0)
    assert np.all(tiny.audio[:, :100] == 0) and np.all(tiny.audio[:, -100:] == 0)
    assert np.all(np.abs(tiny.audio).max(axis=1) > 0.05)
    seven = tiny.audio[tiny.labels == 7]                                  # (4 voices, samples)
    for i in range(len(seven)):
        for j in range(i + 1, len(seven)):
            assert not np.allclose(seven[i], seven[j], atol=1e-3)         # different voices, different audio


@needs_espeak
def test_cache_and_determinism(cache, tiny, capsys):
    files = list((cache / "datasets" / "spoken_digits").glob("*.npz"))
    assert len(files) == 1
    again = sd.load_spoken_digits(**{**TINY, "verbose": True})
    assert "Found spoken digits" in capsys.readouterr().out
    regenerated = sd.load_spoken_digits(**TINY, regenerate=True)
    for other in (again, regenerated):
        assert np.array_equal(other.audio, tiny.audio) and np.array_equal(other.labels, tiny.labels)
    # A different generator setting gets a different cache file (the version key changes).
    sd.load_spoken_digits(**{**TINY, "variants": ("m1",)})
    assert len(list((cache / "datasets" / "spoken_digits").glob("*.npz"))) == 2


@needs_espeak
def test_split_holds_out_voices(tiny):
    train, val, test = sd.split_by_voice(tiny, val_fraction=0.25, test_fraction=0.25, seed=0)
    assert len(train) + len(val) + len(test) == len(tiny)
    train_voices, val_voices, test_voices = set(train.voices), set(val.voices), set(test.voices)
    assert not test_voices & train_voices and not val_voices & train_voices and not test_voices & val_voices
    assert len(test_voices) == len(val_voices) == 1
    again = sd.split_by_voice(tiny, val_fraction=0.25, test_fraction=0.25, seed=0)[2]
    assert set(again.voices) == test_voices                              # deterministic for a seed
    audio, labels = train.tensors()
    assert tuple(audio.shape) == (len(train), sd.SAMPLE_RATE) and labels.dtype == torch.int64
    with pytest.raises(ValueError, match="val_fraction"):
        sd.split_by_voice(tiny, val_fraction=0.0)
    with pytest.raises(ValueError, match="no training voice"):
        sd.split_by_voice(tiny, val_fraction=0.5, test_fraction=0.5)


@needs_espeak
def test_synthesize_and_helpers():
    word = sd.synthesize("three", "en-us+m1", clip_seconds=None)
    assert 0.15 < len(word) / sd.SAMPLE_RATE < 1.0
    assert sd.fix_length(np.ones(10), 4).tolist() == [1, 1, 1, 1]
    assert sd.fix_length(np.ones(2), 6).tolist() == [0, 0, 1, 1, 0, 0]
    padded = np.concatenate([np.zeros(1600), np.ones(800), np.zeros(1600)])
    assert len(sd.trim_silence(padded)) == 800


def test_missing_espeak_raises_with_install_command(cache, monkeypatch):
    monkeypatch.setattr(sd.shutil, "which", lambda name: None)
    with pytest.raises(DataNotFoundError, match="apt-get install espeak-ng"):
        sd.load_spoken_digits(**TINY)
    with pytest.raises(DataNotFoundError, match="espeak-ng"):
        sd.synthesize("one")


def test_bad_arguments(cache):
    with pytest.raises(ValueError, match="styles_per_voice"):
        sd._grid(("en-us",), ("m1",), sd.SPEEDS, sd.PITCHES, 99, 0)
    with pytest.raises(ValueError, match="workers"):
        sd.load_spoken_digits(workers=0)
