#!/usr/bin/env python
"""Give every chapter a last cell that prints the run that produced it (its input hidden on the website).

    python scripts/add_run_footer.py           # add or update the cell where it is missing or differs
    python scripts/add_run_footer.py --check   # change nothing; exit 1 and name the notebooks that differ

The cell calls ``mmtutorial.config.run_footer``, which prints, e.g.

    Produced by this run: full mode on cpu (2 threads), 71.3 s of wall time, mmtutorial 0.1.0,
    torch 2.14.1, Python 3.11.7.

so every chapter page shows the mode, device, the notebook's wall time (from the set-up cell's
``import mmtutorial`` to the last cell) and the versions, written by the run itself, not typed. The cell is
tagged ``run-footer`` (``_static/custom.css`` styles it as a page footer; ``mmtutorial.assignments`` leaves
it out of student notebooks, where it would only time the student) and ``remove-input`` (the website shows
its output only). ``tests/test_site_browser.py`` checks that every executed chapter page shows it.

Idempotent: a notebook whose last cell is already this cell is left untouched, byte for byte; a
``run-footer`` cell elsewhere or with other contents is replaced by the canonical one at the end. The
notebook is written as the repository stores notebooks (``json.dumps(indent=1, ensure_ascii=False)`` plus
a newline, outputs stripped).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = "run-footer"
CELL_ID = "run-footer"
SOURCE = ("# The run that produced this page: mode, device, wall time, versions (written by the run itself).\n"
          "print(mmt.config.run_footer(device))")


def footer_cell() -> dict:
    return {"cell_type": "code", "execution_count": None, "id": CELL_ID,
            "metadata": {"tags": ["remove-input", TAG]}, "outputs": [],
            "source": SOURCE.splitlines(keepends=True)}


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted(path for path in (root / "book").glob("*/*.ipynb") if re.match(r"\d{2}-", path.name))


def with_footer(notebook: dict) -> tuple[dict, bool]:
    """The notebook ending with the footer cell, and whether that changed anything."""
    cells = notebook["cells"]
    if cells and cells[-1] == footer_cell():
        return notebook, False
    kept = [cell for cell in cells
            if TAG not in cell.get("metadata", {}).get("tags", []) and cell.get("id") != CELL_ID]
    notebook = dict(notebook, cells=kept + [footer_cell()])
    return notebook, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook lacks the cell")
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to treat (default: every chapter)")
    args = parser.parse_args(argv)
    paths = args.notebooks or chapters()
    differ = []
    for path in paths:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        updated, changed = with_footer(notebook)
        if not changed:
            continue
        differ.append(path.name)
        if not args.check:
            path.write_text(json.dumps(updated, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if differ:
        print(("missing or different in: " if args.check else "added the run footer to: ") + ", ".join(differ))
    else:
        print(f"every notebook ({len(paths)}) ends with the run footer")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
