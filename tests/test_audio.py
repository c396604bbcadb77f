"""mmtutorial.encoders.audio against torch.stft, torch.fft, librosa and scipy (float64), plus bad-input errors
and the chapter 12 exercise checkers.

librosa is imported lazily and only for the filterbank, mel-scale and MFCC comparisons; its numba-compiled
code is cached after the first run.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch
from torch.testing import assert_close

from mmtutorial.encoders import audio
from mmtutorial.exercises import ExerciseError, ch12

SR = 16000


@pytest.fixture(scope="module")
def signal() -> torch.Tensor:
    """0.5 s of a chirp plus noise, float64 (deterministic)."""
    t = torch.arange(SR // 2, dtype=torch.float64) / SR
    rng = np.random.default_rng(0)
    return 0.5 * torch.sin(2 * math.pi * (200 + 3000 * t) * t) + 0.05 * torch.from_numpy(rng.normal(size=len(t)))


def test_hann_window_matches_torch():
    for length in (1, 16, 400, 401):
        assert_close(audio.hann_window(length), torch.hann_window(length, dtype=torch.float64))
        assert_close(audio.hann_window(length, periodic=False),
                     torch.hann_window(length, periodic=False, dtype=torch.float64))


def test_frame_count_worked_example():
    # ERRATA worked example 9: 20 s at 16 kHz, 25 ms every 10 ms -> 1,998 frames x 13 = 25,974 values.
    frames = audio.frame_signal(torch.zeros(20 * SR, dtype=torch.float64), 400, 160)
    assert frames.shape == (1998, 400) == (audio.num_frames(20 * SR, 400, 160, center=False), 400)
    assert frames.shape[0] * 13 == 25974
    assert audio.num_frames(SR, 400, 160, center=True) == 101


def test_dft_matrix_and_fft_match_torch_rfft(signal):
    frames = audio.frame_signal(signal, 512, 128)                          # (n_frames, 512)
    expected = torch.fft.rfft(frames)
    assert_close(audio.dft(frames, use_fft=False), expected, rtol=1e-10, atol=1e-10)
    assert_close(audio.dft(frames, use_fft=True), expected)
    assert audio.dft_matrix(8).shape == (5, 8)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
@pytest.mark.parametrize("win_length", [None, 300])
@pytest.mark.parametrize("center", [True, False])
def test_stft_matches_torch_stft(signal, pad_mode, win_length, center):
    window = torch.hann_window(win_length or 512, dtype=torch.float64)
    expected = torch.stft(signal, 512, 128, win_length=win_length, window=window, center=center,
                          pad_mode=pad_mode, return_complex=True)
    for use_fft in (True, False):
        got = audio.stft(signal, 512, 128, win_length=win_length, center=center, pad_mode=pad_mode,
                         use_fft=use_fft)
        assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_stft_batch_equals_single(signal):
    batch = torch.stack([signal, 0.3 * signal.flip(0)])                     # (2, time)
    spectra = audio.stft(batch, 400, 160)                                   # (2, 201, n_frames)
    assert_close(spectra[1], audio.stft(0.3 * signal.flip(0), 400, 160))
    assert_close(audio.log_mel_spectrogram(batch, SR)[1], audio.log_mel_spectrogram(0.3 * signal.flip(0), SR))


@pytest.mark.parametrize("htk", [True, False])
def test_mel_scale_matches_librosa(htk):
    librosa = pytest.importorskip("librosa")
    frequencies = np.linspace(0.0, 11025.0, 200)
    assert np.allclose(audio.hz_to_mel(frequencies, htk=htk), librosa.hz_to_mel(frequencies, htk=htk),
                       rtol=1e-12, atol=1e-12)
    mels = audio.hz_to_mel(frequencies, htk=htk)
    assert np.allclose(audio.mel_to_hz(mels, htk=htk), frequencies, rtol=1e-10, atol=1e-8)
    assert_close(audio.hz_to_mel(torch.from_numpy(frequencies), htk=htk), torch.from_numpy(mels))


@pytest.mark.parametrize("htk", [True, False])
@pytest.mark.parametrize("norm", ["slaney", None])
def test_mel_filterbank_matches_librosa(htk, norm):
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmin, fmax in ((16000, 400, 40, 0.0, None), (22050, 1024, 64, 50.0, 8000.0)):
        expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                                       norm=norm, dtype=np.float64)
        got = audio.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm)
        assert got.dtype == torch.float64 and got.shape == (n_mels, n_fft // 2 + 1)
        assert_close(got, torch.from_numpy(expected), rtol=1e-10, atol=1e-12)


def test_dct_matrix_matches_scipy():
    vectors = np.random.default_rng(1).normal(size=(6, 40))
    for n in (1, 13, 40):
        matrix = audio.dct_matrix(n)
        assert_close(matrix @ matrix.T, torch.eye(n, dtype=torch.float64))
        expected = scipy.fft.dct(vectors[:, :n], type=2, norm="ortho", axis=-1)
        assert_close(torch.from_numpy(vectors[:, :n]) @ matrix.T, torch.from_numpy(expected))


@pytest.mark.parametrize("htk", [True, False])
def test_log_mel_and_mfcc_match_librosa(signal, htk):
    librosa = pytest.importorskip("librosa")
    y = signal.numpy()
    settings = dict(n_fft=400, hop_length=160, n_mels=40, center=True, pad_mode="constant", power=2.0)
    # librosa builds its mel filters in float32 inside melspectrogram: agreement to ~1e-5 relative.
    expected_mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13, dct_type=2, norm="ortho", lifter=0, htk=htk,
                                         window="hann", **settings)
    got = audio.mfcc(signal, SR, n_mfcc=13, n_mels=40, n_fft=400, hop_length=160, htk=htk)
    assert got.shape == (13, 51)
    assert_close(got, torch.from_numpy(expected_mfcc), rtol=1e-5, atol=1e-4)
    expected_log_mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, htk=htk, **settings),
                                           top_db=80.0)
    assert_close(audio.log_mel_spectrogram(signal, SR, htk=htk), torch.from_numpy(expected_log_mel),
                 rtol=1e-5, atol=1e-4)


def test_power_to_db_matches_librosa():
    librosa = pytest.importorskip("librosa")
    power = np.abs(np.random.default_rng(2).normal(size=(20, 30))) ** 4
    for top_db in (80.0, 20.0, None):
        assert_close(audio.power_to_db(torch.from_numpy(power), top_db=top_db),
                     torch.from_numpy(librosa.power_to_db(power, top_db=top_db)))


def test_log_frame_energy_is_one_number_per_frame(signal):
    energy = audio.log_frame_energy(signal, 400, 160, center=False)       # (n_frames,)
    frames = audio.frame_signal(signal, 400, 160) * audio.hann_window(400)
    assert energy.shape == (frames.shape[0],)
    assert_close(energy, torch.log((torch.fft.fft(frames).abs() ** 2).sum(-1)))   # full two-sided sum
    assert_close(energy, torch.log(400 * (frames ** 2).sum(-1)))                # Parseval


def test_log_mel_module_matches_function(signal):
    front_end = audio.LogMel(SR, 400, 160, 40)
    assert_close(front_end(signal.float()[None])[0], audio.log_mel_spectrogram(signal, SR).float(),
                 rtol=1e-4, atol=1e-3)


def test_audio_cnn_shapes_and_embedding():
    torch.manual_seed(0)
    model = audio.AudioCNN(audio.AudioCNNConfig(channels=(4, 8), n_mels=16, freq_mask=3, time_mask=5))
    waveform = torch.randn(3, SR) * 0.1
    assert model(waveform).shape == (3, 10)
    assert model.embed(waveform, sample_rate=SR).shape == (3, model.embed_dim) == (3, 8)
    model.eval()
    spec = model.front_end(waveform)
    assert_close(model(waveform), model.backbone(spec))
    with pytest.raises(ValueError, match="n_mels=16"):
        model.backbone(torch.zeros(2, 40, 101))


def test_resample_changes_rate():
    tone = np.sin(2 * np.pi * 1000 * np.arange(22050) / 22050)
    resampled = audio.resample(tone, 22050, 16000)
    assert resampled.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(resampled))
    assert np.argmax(spectrum) == 1000                                    # 1 Hz bins over 1 s at 16 kHz
    assert isinstance(audio.resample(torch.from_numpy(tone), 22050, 16000), torch.Tensor)


# ------------------------------------------------------------------------------------------------
# Bad input: clear errors naming expected and received
# ------------------------------------------------------------------------------------------------
def test_wrong_sample_rate_is_refused():
    with pytest.raises(ValueError, match=r"expected audio sampled at 16000 Hz, received 22050 Hz"):
        audio.LogMel(16000)(torch.zeros(1, 22050), sample_rate=22050)
    with pytest.raises(ValueError, match="16000.*22050"):
        audio.AudioCNN()(torch.zeros(1, 22050), sample_rate=22050)


@pytest.mark.parametrize("bad, error, message", [
    (torch.zeros(16000, dtype=torch.int16), TypeError, r"floating point.*torch.int16"),
    ([0.0, 1.0], TypeError, "torch.Tensor or numpy array, got list"),
    (torch.zeros(16000, 2), ValueError, r"\(time, channels\)"),
    (torch.zeros(2, 2, 16000), ValueError, r"mono.*channels=2"),
    (torch.zeros(100), ValueError, r"100 samples.*n_fft"),
])
def test_bad_waveforms(bad, error, message):
    with pytest.raises(error, match=message):
        audio.stft(bad, n_fft=400, center=False)


def test_bad_settings():
    with pytest.raises(ValueError, match="win_length must be <= n_fft"):
        audio.stft(torch.zeros(1000), n_fft=256, win_length=512)
    with pytest.raises(ValueError, match="pad_mode"):
        audio.stft(torch.zeros(1000), n_fft=256, pad_mode="edge")
    with pytest.raises(ValueError, match="fmax"):
        audio.mel_filterbank(16000, 400, 40, fmax=9000)
    with pytest.raises(ValueError, match="n_mfcc"):
        audio.mfcc(torch.zeros(4000), SR, n_mfcc=50, n_mels=40)
    with pytest.raises(ValueError, match="shorter than one frame"):
        audio.num_frames(100, 400, 160)
    with pytest.raises(ValueError, match="channels"):
        audio.AudioCNNConfig(channels=())


# ------------------------------------------------------------------------------------------------
# Exercise checkers accept the right answer and reject a wrong one
# ------------------------------------------------------------------------------------------------
def _dct_ii_ortho(n):
    return audio.dct_matrix(n).numpy()


def _mfcc_size(seconds, sample_rate, window_ms, hop_ms, n_mfcc):
    samples = int(round(seconds * sample_rate))
    window, hop = int(round(window_ms * sample_rate / 1000)), int(round(hop_ms * sample_rate / 1000))
    frames = 1 + (samples - window) // hop
    return frames, frames * n_mfcc


def test_checkers_accept_right_answers(capsys):
    ch12.check_hz_to_mel_htk(lambda f: 2595 * np.log10(1 + np.asarray(f) / 700))
    ch12.check_dct_ii_ortho(_dct_ii_ortho)
    ch12.check_mfcc_size(_mfcc_size)
    assert capsys.readouterr().out.count("correct") == 3


def test_checkers_reject_wrong_answers():
    with pytest.raises(ExerciseError, match="hz_to_mel_htk"):
        ch12.check_hz_to_mel_htk(lambda f: 1127 * np.log10(1 + np.asarray(f) / 700))   # ln constant with log10
    with pytest.raises(ExerciseError, match="dct_ii_ortho"):
        ch12.check_dct_ii_ortho(lambda n: np.sqrt(2 / n) * np.cos(np.pi * np.arange(n)[:, None]
                                                                  * (2 * np.arange(n)[None] + 1) / (2 * n)))
    with pytest.raises(ExerciseError, match="mfcc_size"):
        ch12.check_mfcc_size(lambda s, r, w, h, n: (int(s * 1000 / h), int(s * 1000 / h) * n))  # T/H frames
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        def stub(f):
            raise NotImplementedError
        ch12.check_hz_to_mel_htk(stub)
