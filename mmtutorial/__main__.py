"""Command line: ``python -m mmtutorial doctor`` | ``download fashion-mnist`` | ``prepare-data`` |
``assignments [CHAPTER ...]`` | ``grade ASSIGNMENT SUBMISSION ...`` | ``otter-env``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmtutorial", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="versions, device, cache, QUICK mode, offline data and models")
    download = commands.add_parser("download", help="download a data set (needs internet)")
    download.add_argument("dataset", choices=["fashion-mnist"])
    commands.add_parser("prepare-data", help="fill the cache from the offline sources (Debian packages)")
    assignments = commands.add_parser(
        "assignments", help="turn chapters into student notebooks and otter-grader autograders (book/teaching.md)")
    assignments.add_argument("chapters", nargs="*", help="chapter numbers (default: every chapter with exercises)")
    assignments.add_argument("--output", type=Path, help="where to write them (default: _build/assignments)")
    assignments.add_argument("--points", type=Path, help="YAML file of points per exercise, e.g. '\"1.1\": 2' "
                                                         "(default: 1 each)")
    assignments.add_argument("--no-check", action="store_true",
                             help="do not grade the reference solutions (they must score full marks)")
    grade = commands.add_parser("grade", help="grade submissions with a chapter's autograder (otter run, no Docker)")
    grade.add_argument("assignment", type=Path,
                       help="the chapter's assignment folder (e.g. _build/assignments/01-neurons-forward-pass) "
                            "or its autograder zip")
    grade.add_argument("submissions", nargs="+", type=Path, help="notebooks, zip files, or folders of them")
    grade.add_argument("--output", type=Path, help="where grades.csv and feedback/ go (default: ASSIGNMENT/grades)")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default: 1)")
    grade.add_argument("--timeout", type=float, default=900.0,
                       help="seconds a submission may run before it gets no grade (default: 900)")
    commands.add_parser("otter-env", help="create or check otter-grader's own virtual environment (.venv-otter)")
    args = parser.parse_args(argv)

    if args.command in {"assignments", "grade", "otter-env"}:
        return _assignments_command(args)

    if args.command == "doctor":
        from .doctor import report
        text, ok = report()
        print(text)
        return 0 if ok else 1
    from . import data
    if args.command == "download":
        root = data.fashion_mnist_root(download=True)
        print(f"Fashion-MNIST ready in {root}")
        return 0
    if args.command == "prepare-data":
        prepared = []
        for name, prepare in (("Fashion-MNIST", data.fashion_mnist_root), ("KJV Bible", data.kjv_bible)):
            try:
                prepare()
                prepared.append(name)
            except data.DataNotFoundError as error:
                print(f"skipped {name}: {error}", file=sys.stderr)
        print(f"prepared: {', '.join(prepared) or 'nothing'}")
        return 0
    return 2


def _assignments_command(args: argparse.Namespace) -> int:
    from . import assignments

    try:
        venv = assignments.ensure_otter_env(quiet=args.command != "otter-env")
        if args.command == "otter-env":
            return 0
        if args.command == "assignments":
            chapters = args.chapters or assignments.chapters_with_exercises()
            output = args.output or assignments.book_root() / "_build" / "assignments"
            built = assignments.build_assignments(chapters, output, points=assignments.read_points(args.points),
                                                  check=not args.no_check, venv=venv)
            for assignment in built:
                reference = assignment.reference
                checked = (f"reference solutions {reference.score:g}/{reference.max_score:g}" if reference
                           else "not checked")
                print(f"chapter {assignment.chapter}: {len(assignment.exercises)} exercises, {checked}; "
                      f"student notebook {assignment.student}")
            print(f"summary: {output / 'README.md'}")
            return 0
        output = args.output or (args.assignment if args.assignment.is_dir() else args.assignment.parent) / "grades"
        grades = assignments.grade(args.assignment, args.submissions, output, jobs=args.jobs, venv=venv,
                                   timeout_s=args.timeout)
        for result in grades:
            detail = result.error or ", ".join(f"{name} {score:g}" for name, score in result.scores().items())
            print(f"{result.submission}: {result.score:g}/{result.max_score:g} ({detail})")
        print(f"grades: {output / 'grades.csv'}; feedback for each submission in {output / 'feedback'}")
        return 0 if not any(result.error for result in grades) else 1
    except assignments.AssignmentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
