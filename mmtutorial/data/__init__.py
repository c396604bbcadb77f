"""Real data that is present offline, with the real download path kept for Colab.

Every loader either returns data or raises :class:`DataNotFoundError` whose message is the exact command
that gets the data.  Nothing here touches the network unless the caller asks for a download.
Synthetic video clips of moving shapes (chapter 21) are in ``mmtutorial.data.clips``; chapter 23's held-out
code tasks and the generated training functions of the same families are in ``mmtutorial.data.code_tasks``.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import sha256_file  # noqa: F401  (re-exported: data.sha256_file)
from ..config import cache_dir


class DataNotFoundError(FileNotFoundError):
    """Raised when a data set is missing; the message says how to get it."""


# --------------------------------------------------------------------------------------------------
# Handwritten digits (scikit-learn, bundled)
# --------------------------------------------------------------------------------------------------
@dataclass
class Split:
    """Train / validation / test arrays of one data set (features are float64, labels int64)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray | None = None  # standardisation statistics, fitted on the training split only
    std: np.ndarray | None = None

    def as_tensors(self, dtype=None):
        """The six arrays as torch tensors (features ``float32`` unless ``dtype`` is given)."""
        import torch
        dtype = dtype or torch.float32
        return tuple(torch.as_tensor(a, dtype=dtype if a.dtype.kind == "f" else torch.long)
                     for a in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test))

    def __repr__(self) -> str:
        return (f"Split(train={self.x_train.shape}, val={self.x_val.shape}, test={self.x_test.shape}, "
                f"classes={len(np.unique(self.y_train))})")


def load_digits(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                standardize: bool = True) -> Split:
    """scikit-learn's 1,797 handwritten digits (8×8 pixels, 0–16) as a stratified train/val/test split.

    Features have shape ``(n, 64)``.  With ``standardize`` each pixel is scaled by the training split's
    mean and standard deviation (pixels that are constant in training keep std 1, so nothing divides by 0).
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
            raise TypeError(f"{name} must be a number in (0, 1), got {type(fraction).__name__} {fraction!r}")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    digits = sklearn_digits()
    x = digits.data.astype(np.float64)                                   # (1797, 64)
    y = digits.target.astype(np.int64)                                   # (1797,)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), stratify=y_rest, random_state=seed)
    mean = std = None
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, mean, std)


# --------------------------------------------------------------------------------------------------
# Fashion-MNIST (Debian package offline, torchvision's download on Colab)
# --------------------------------------------------------------------------------------------------
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# SHA-256 of the four files shipped by Debian's dataset-fashion-mnist (they are the upstream gzip files
# recompressed, so torchvision's MD5s do not apply).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_MNIST_HELP = ("Fashion-MNIST is missing. Offline (Debian/Ubuntu): "
                      "`sudo apt-get install dataset-fashion-mnist`; with internet: "
                      "`python -m mmtutorial download fashion-mnist`.")


def fashion_mnist_root(download: bool = False, source_dir: str | os.PathLike | None = None) -> Path:
    """Make sure ``<cache>/datasets/FashionMNIST/raw/`` holds the four uncompressed files; return the root.

    Looks for the Debian files (SHA-256 verified, gunzipped once, ~0.6 s); with ``download=True`` falls back
    to torchvision's real download (Colab).  Raises :class:`DataNotFoundError` otherwise.
    """
    root = cache_dir("datasets")
    raw = root / "FashionMNIST" / "raw"
    wanted = [name[:-3] for name in FASHION_MNIST_SHA256]
    if all((raw / name).exists() for name in wanted):
        return root
    source = Path(source_dir) if source_dir is not None else DEBIAN_FASHION_MNIST_DIR
    if all((source / name).exists() for name in FASHION_MNIST_SHA256):
        raw.mkdir(parents=True, exist_ok=True)
        for name, expected in FASHION_MNIST_SHA256.items():
            actual = sha256_file(source / name)
            if actual != expected:
                raise ValueError(f"{source / name} has SHA-256 {actual}, expected {expected}: "
                                 "the file is corrupt or not the Fashion-MNIST release")
            tmp = raw / (name[:-3] + ".tmp")
            with gzip.open(source / name, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, raw / name[:-3])                      # atomic: no half-written file remains
        return root
    if download:
        from torchvision.datasets import FashionMNIST
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
        return root
    raise DataNotFoundError(FASHION_MNIST_HELP)


def fashion_mnist(train: bool = True, transform=None, download: bool = False):
    """torchvision's ``FashionMNIST`` (60,000 train / 10,000 test 28×28 images) read from the cache."""
    from torchvision.datasets import FashionMNIST
    root = fashion_mnist_root(download=download)
    return FashionMNIST(str(root), train=train, transform=transform, download=False)


def fashion_mnist_tensors(train: bool = True):
    """All images as a ``uint8`` tensor ``(n, 28, 28)`` and labels ``int64`` ``(n,)``: fast, no per-item loop."""
    dataset = fashion_mnist(train=train)
    return dataset.data, dataset.targets


# --------------------------------------------------------------------------------------------------
# Real photographs (scikit-image)
# --------------------------------------------------------------------------------------------------
PHOTOS = ("astronaut", "camera", "cat", "chelsea", "coffee", "rocket", "horse", "hubble_deep_field")


def photo(name: str) -> np.ndarray:
    """A real photograph bundled with scikit-image, as a ``uint8`` array (H, W) or (H, W, 3)."""
    from skimage import data as skdata
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; expected one of {PHOTOS}")
    return np.asarray(getattr(skdata, name)())


# --------------------------------------------------------------------------------------------------
# Text corpora
# --------------------------------------------------------------------------------------------------
def python_stdlib_corpus(max_chars: int | None = None, max_files: int | None = None) -> str:
    """Concatenated Python standard-library sources (deterministic order), a real code corpus.

    Test suites and vendored packages are left out.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py")) + sorted(
        p for p in stdlib.glob("*/*.py") if not p.parts[-2].startswith(("test", "idlelib", "site-packages",
                                                                        "lib2to3", "tkinter")))
    if not files:
        raise DataNotFoundError(f"no Python sources found under {stdlib}")
    pieces, total = [], 0
    for count, path in enumerate(files):
        if max_files is not None and count >= max_files:
            break
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        pieces.append(f"# file: {path.relative_to(stdlib)}\n{text}\n")
        total += len(pieces[-1])
        if max_chars is not None and total >= max_chars:
            break
    corpus = "".join(pieces)
    return corpus[:max_chars] if max_chars is not None else corpus


BIBLE_HELP = "The KJV Bible is missing. Install it with `sudo apt-get install bible-kjv` (Debian/Ubuntu)."


def kjv_bible() -> list[str]:
    """The 31,102 verses of the King James Bible (Debian ``bible-kjv``), cached as text after the first call."""
    cached = cache_dir("datasets") / "kjv.txt"
    if not cached.exists():
        program = shutil.which("bible")
        if program is None:
            raise DataNotFoundError(BIBLE_HELP)
        result = subprocess.run([program, "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                                check=True, timeout=120)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(result.stdout, encoding="utf-8")
        os.replace(tmp, cached)
    verses = []
    for line in cached.read_text(encoding="utf-8").splitlines():
        reference, _, text = line.partition(" ")   # "Ge1:1 In the beginning ..."
        if text.strip():
            verses.append(text.strip())
    return verses
