"""Time every chapter notebook in QUICK and/or full mode (one fresh kernel each, like nbmake).

    python benchmarks/time_notebooks.py                 # both modes, every notebook
    python benchmarks/time_notebooks.py --mode quick book/part1-foundations/02-backpropagation.ipynb

Writes _build/benchmarks/notebook_times.json and prints a table. Budgets (DESIGN.md): QUICK <= 60 s and
full <= 180 s per notebook on a 2-core CPU. Timings are reported, never asserted in tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET = {"quick": 60.0, "full": 180.0}


def run_notebook(path: Path, quick: bool, cache: str) -> float:
    notebook = nbformat.read(path, as_version=4)
    env_backup = dict(os.environ)
    os.environ["MMTUTORIAL_QUICK"] = "1" if quick else "0"
    os.environ["MMTUTORIAL_CACHE"] = cache
    try:
        start = time.perf_counter()
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        return time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(env_backup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--mode", choices=["quick", "full", "both"], default="both")
    parser.add_argument("--warm-cache", action="store_true",
                        help="reuse the user's cache (trained models load instead of training)")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "book").glob("part*/*.ipynb"))
    modes = ["quick", "full"] if args.mode == "both" else [args.mode]
    results, over_budget = [], False
    with tempfile.TemporaryDirectory(prefix="mmt-bench-") as fresh_cache:
        for mode in modes:
            cache = os.environ.get("MMTUTORIAL_CACHE", "") if args.warm_cache else os.path.join(fresh_cache, mode)
            for path in notebooks:
                seconds = run_notebook(path.resolve(), quick=mode == "quick", cache=cache)
                ok = seconds <= BUDGET[mode]
                over_budget |= not ok
                results.append({"notebook": str(path.resolve().relative_to(ROOT)), "mode": mode,
                                "seconds": round(seconds, 1), "budget": BUDGET[mode], "within_budget": ok})
                print(f"{mode:5s} {seconds:7.1f} s  (budget {BUDGET[mode]:.0f} s){'' if ok else '  OVER'}  {path}",
                      flush=True)
    out = ROOT / "_build" / "benchmarks" / "notebook_times.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "python": sys.version.split()[0], "results": results}, indent=2))
    print(f"wrote {out}")
    return 1 if over_budget else 0


if __name__ == "__main__":
    sys.exit(main())
