"""config, utils, data loaders, viz and the doctor."""
import gzip
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

import mmtutorial as mmt
from mmtutorial import data


def test_quick_mode_and_scale(monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1")
    assert mmt.is_quick() and mmt.scale(full=10, quick=1) == 1 and mmt.mode_name() == "QUICK"
    monkeypatch.setenv("MMTUTORIAL_QUICK", "0")
    assert not mmt.is_quick() and mmt.scale(full=10, quick=1) == 10
    monkeypatch.setenv("MMTUTORIAL_QUICK", "maybe")
    with pytest.raises(ValueError, match="MMTUTORIAL_QUICK must be one of"):
        mmt.is_quick()
    monkeypatch.delenv("MMTUTORIAL_QUICK")
    with pytest.raises(TypeError, match="one type"):
        mmt.scale(full=10, quick=0.5)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path / "cache"))
    assert mmt.cache_dir("models") == tmp_path / "cache" / "models"
    assert (tmp_path / "cache" / "models").is_dir()


def test_cache_dir_stays_inside_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path / "cache"))
    for bad in ("/etc", "../outside", "", 3):               # joinpath("/etc") used to leave the cache
        with pytest.raises(ValueError, match="relative folder names inside the cache"):
            mmt.cache_dir(bad)
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="a file is in the way"):
        mmt.cache_dir("models")


def test_device_choice(monkeypatch):
    monkeypatch.delenv("MMTUTORIAL_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert mmt.get_device().type in (expected, "mps")
    assert mmt.get_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            mmt.get_device("cuda")
    with pytest.raises(ValueError, match="prefer='gpu' is not a device; expected 'cpu', 'cuda'"):
        mmt.get_device("gpu")
    monkeypatch.setenv("MMTUTORIAL_DEVICE", "tpu")
    with pytest.raises(ValueError, match="MMTUTORIAL_DEVICE='tpu' is not a device"):
        mmt.get_device()


def test_seed_everything_reproduces_numbers():
    mmt.seed_everything(3)
    first = (torch.randn(4), np.random.rand(3))
    mmt.seed_everything(3)
    second = (torch.randn(4), np.random.rand(3))
    torch.testing.assert_close(first[0], second[0], rtol=0, atol=0)
    np.testing.assert_array_equal(first[1], second[1])
    with pytest.raises(TypeError, match="seed must be an int"):
        mmt.seed_everything("3")
    with pytest.raises(ValueError, match=r"seed must be in \[-2\*\*63, 2\*\*64\)"):
        mmt.seed_everything(2**64)
    assert mmt.seed_everything(np.int64(3)) == 3


def test_count_parameters_matches_the_formula():
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    assert mmt.count_parameters(model) == 64 * 32 + 32 + 32 * 10 + 10
    model[0].weight.requires_grad_(False)
    assert mmt.count_parameters(model, trainable_only=True) == 32 + 32 * 10 + 10
    with pytest.raises(TypeError, match="nn.Module"):
        mmt.count_parameters([1, 2])


def test_timer_measures():
    with mmt.Timer("sleep") as timer:
        sum(range(10_000))
    assert timer.seconds > 0 and str(timer).startswith("sleep: ")


def test_digits_split_is_stratified_deterministic_and_standardised():
    split = data.load_digits(seed=0)
    assert split.x_train.shape[1] == 64 and len(split.x_train) + len(split.x_val) + len(split.x_test) == 1797
    assert len(split.x_test) == 360
    again = data.load_digits(seed=0)
    np.testing.assert_array_equal(split.x_train, again.x_train)
    np.testing.assert_allclose(split.x_train.mean(axis=0), 0.0, atol=1e-12)
    # Stratified: every split has every class in close to the overall proportion.
    overall = np.bincount(sklearn_digits().target) / 1797
    for labels in (split.y_train, split.y_val, split.y_test):
        np.testing.assert_allclose(np.bincount(labels, minlength=10) / len(labels), overall, atol=0.02)
    raw = data.load_digits(standardize=False)
    assert raw.x_train.max() == 16.0 and raw.mean is None
    x_train, y_train, *_ = split.as_tensors()
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    with pytest.raises(ValueError, match="val_fraction"):
        data.load_digits(val_fraction=0.0)


def test_fashion_mnist_from_the_debian_files(tmp_path, monkeypatch):
    if not data.DEBIAN_FASHION_MNIST_DIR.exists():
        pytest.skip("dataset-fashion-mnist is not installed")
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    test_set = data.fashion_mnist(train=False)
    assert len(test_set) == 10_000
    images, labels = data.fashion_mnist_tensors(train=False)
    assert images.shape == (10_000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_fashion_mnist_rejects_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "debian"
    source.mkdir()
    for name in data.FASHION_MNIST_SHA256:
        with gzip.open(source / name, "wb") as handle:
            handle.write(b"not the real data")
    with pytest.raises(ValueError, match="SHA-256"):
        data.fashion_mnist_root(source_dir=source)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    with pytest.raises(data.DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist_root(source_dir=tmp_path / "nowhere")
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(data.DataNotFoundError, match="apt-get install bible-kjv"):
        data.kjv_bible()


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert data.sha256_file(path) == hashlib.sha256(b"abc").hexdigest()


def test_text_corpora():
    corpus = data.python_stdlib_corpus(max_chars=50_000)
    assert len(corpus) == 50_000 and "def " in corpus
    if data.shutil.which("bible") is None:
        pytest.skip("bible-kjv is not installed")
    verses = data.kjv_bible()
    assert len(verses) == 31_102
    assert verses[0] == "In the beginning God created the heaven and the earth."


def test_photos():
    assert data.photo("chelsea").shape == (300, 451, 3)
    with pytest.raises(ValueError, match="unknown photo"):
        data.photo("dog")


def test_plot_history_and_images():
    import matplotlib
    matplotlib.use("Agg")
    from mmtutorial.training import History
    history = History(steps=[{"step": 1, "epoch": 0, "loss": 1.0, "lr": 0.1}],
                      epochs=[{"epoch": 0, "train_loss": 1.0, "val_loss": 1.2}])
    ax = mmt.viz.plot_history(history)
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="none of"):
        mmt.viz.plot_history(history, metrics=("val_accuracy",))
    fig = mmt.viz.show_images(np.zeros((3, 8, 8)), labels=["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="images"):
        mmt.viz.show_images(np.zeros((8, 8)))


def test_doctor_command_runs():
    result = subprocess.run([sys.executable, "-m", "mmtutorial", "doctor"], capture_output=True, text=True,
                            timeout=120)
    assert "Offline data" in result.stdout and "Pretrained models" in result.stdout
    assert "Sandbox for generated code" in result.stdout and "rlimits" in result.stdout
    assert result.returncode in (0, 1)
    if result.returncode == 1:
        assert "get it with:" in result.stdout


def test_cpu_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with mmt.utils.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with mmt.utils.cpu_threads(1):
            raise RuntimeError("the setting is restored on errors too")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive int"):
        with mmt.utils.cpu_threads(0):
            pass
