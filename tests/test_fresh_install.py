"""What a Colab user gets: a new environment with ``pip install "mmtutorial[book]"`` only runs a chapter.

The package is installed from this checkout, non-editable, with its ``book`` extra (pyproject.toml's own
dependency lists, not requirements.txt, whose pins serve only as constraints so that pip picks the tested
versions instead of resolving anew), into a virtual environment of its own.  A chapter that uses reference
libraries (chapter 12: librosa; espeak-ng for its data) then runs in QUICK mode from a folder outside the
repository, so it can only import what was installed.  This takes a few minutes (PyTorch is installed again),
which is why it is marked slow; it is still part of ``make test``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "part3-encoders" / "12-audio.ipynb"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (f"{' '.join(command)} failed ({result.returncode}):\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="chapter 12's data needs espeak-ng (make setup)")
def test_a_fresh_environment_with_the_book_extra_runs_a_chapter(tmp_path):
    environment = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(environment)])
    python = environment / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--constraint", str(ROOT / "requirements.txt"), f"{ROOT}[book,test]"])
    outside = tmp_path / "reader"                      # a folder with nothing of the repository in it
    outside.mkdir()
    location = run([str(python), "-c", "import mmtutorial; print(mmtutorial.__file__)"], cwd=outside).stdout.strip()
    assert Path(location).is_relative_to(environment), f"mmtutorial imported from {location}, not the new environment"
    shutil.copy(CHAPTER, outside / CHAPTER.name)
    environment_variables = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    environment_variables.update(MMTUTORIAL_QUICK="1", MMTUTORIAL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
                                 PATH=f"{environment / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    result = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake", "--nbmake-timeout=600",
                  CHAPTER.name], cwd=outside, env=environment_variables)
    assert "1 passed" in result.stdout
