"""Chapters as course assignments: a student notebook and an otter-grader autograder per chapter.

    python -m mmtutorial assignments 1 4 13            # build into _build/assignments/ (make assignments)
    python -m mmtutorial grade _build/assignments/01-neurons-forward-pass submissions/

Every chapter ends with exercises written once, in the chapter, as three cells: an **exercise** cell (tag
``exercise``: the stub the learner completes), a **solution** cell (tag ``solution``) and a **check** cell,
``mmt.exercises.chNN.check_name(answer, ...)``, one line that calls the package's checker. This module
derives everything else from those cells, so no exercise is ever written twice:

1. :func:`master_notebook` turns a chapter into an `otter-grader <https://otter-grader.readthedocs.io>`_
   "master" notebook: the whole chapter (prose, set-up and every cell the exercises build on), QUICK mode
   switched on before the set-up cell, an Otter cell after it, and each exercise as an Otter question
   worth its points: the stub as the student's answer cell, the solution hidden from the student, and as
   its test the same checker call the chapter makes (an exception-based test, so a failing checker's
   message, which says what was expected, is the feedback). Cells tagged ``run-footer`` are left out.
2. :func:`build_assignment` runs ``otter assign`` on it: the student notebook (the chapter with its
   solutions removed), the solutions notebook and the autograder zip. It then grades the solutions
   notebook like any submission and refuses an assignment whose reference solutions lose a point.
3. :func:`grade` runs ``otter run`` (local grading, no Docker) on each submission and writes
   ``grades.csv`` and one feedback file per submission.

otter-grader lives in its own virtual environment, ``.venv-otter`` (:func:`ensure_otter_env`, pinned in
``requirements-otter.txt``): it sees the book's environment through a ``.pth`` file, so grading kernels
import ``mmtutorial`` and torch from there, while otter's own dependencies stay out of the book's.
"""
from __future__ import annotations

import ast
import copy
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OTTER_ENV_VARIABLE = "MMTUTORIAL_OTTER_VENV"
REQUIREMENTS_FILE = "requirements-otter.txt"
EXERCISE_TAG, SOLUTION_TAG, FOOTER_TAG = "exercise", "solution", "run-footer"
# A submission still running after this long (an endless loop, a full-mode training) gets no grade.
GRADING_TIMEOUT_S = 900.0
# The check cell: one call of a chapter's checker, e.g. mmt.exercises.ch01.check_softplus(softplus, softplus_grad)
CHECK_CALL = re.compile(r"^\s*mmt\.exercises\.(ch\d\d)\.(check_\w+)\((.*)\)\s*$", re.DOTALL)
# "**Exercise 1.1 (softplus).**" or "**1. RMSProp.**": the exercise's title in its prompt
PROMPT_TITLE = re.compile(r"\*\*(?:Exercise\s+)?\d+(?:\.\d+)?\.?\s*(?:\(([^)]*)\))?\.?\s*([^*]*?)\.?\*\*")
QUICK_SOURCE = ("# QUICK mode: every code path of the chapter on less data, so the notebook (and its grading)\n"
                "# runs in about a minute. Set it before the set-up cell imports mmtutorial.\n"
                "import os\n"
                'os.environ["MMTUTORIAL_QUICK"] = "1"')
OTTER_INIT_SOURCE = ("# Otter-Grader checks your answers with the book's own checkers: grader.check(\"ex1_1\").\n"
                     "# (On Colab, or wherever otter-grader is missing, it is installed first.)\n"
                     "import importlib.util\n"
                     "if importlib.util.find_spec(\"otter\") is None:\n"
                     "    %pip install -q \"{requirement}\"\n"
                     "import otter\n"
                     "grader = otter.Notebook(\"{notebook}\")")


class AssignmentError(RuntimeError):
    """A chapter that cannot become an assignment, or an assignment that does not grade as it should."""


# --------------------------------------------------------------------------------------------------
# Reading a chapter's exercises


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter, as its three cells define it."""

    chapter: int
    index: int               # 1, 2, ... within the chapter
    title: str
    stub: str                # the exercise cell's source: what the student starts from
    solution: str            # the solution cell's source
    check_call: str          # the check cell's source, e.g. "mmt.exercises.ch01.check_softplus(softplus, ...)"
    checker: str             # "check_softplus"
    arguments: tuple[str, ...]   # the names the checker is called with, read from the student's notebook
    cells: tuple[int, int, int]  # indices of the exercise, solution and check cells in the chapter

    @property
    def number(self) -> str:
        return f"{self.chapter}.{self.index}"

    @property
    def name(self) -> str:
        """The Otter question name: ``ex1_1``."""
        return f"ex{self.chapter}_{self.index}"


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise AssignmentError(f"{path} is not a notebook (invalid JSON: {error})") from error


def chapter_number(path: Path) -> int:
    match = re.match(r"(\d{2})-", Path(path).name)
    if not match:
        raise AssignmentError(f"{path} is not named like a chapter (NN-name.ipynb)")
    return int(match.group(1))


def book_root() -> Path:
    """The repository holding the book (``_toc.yml``): this package's parent folder, else the current one."""
    for candidate in (Path(__file__).resolve().parent.parent, Path.cwd(), *Path.cwd().parents):
        if (candidate / "_toc.yml").is_file() and (candidate / "book").is_dir():
            return candidate
    raise AssignmentError("the assignments are built from the book's notebooks: run this from a clone of the "
                          "book's repository (a folder with _toc.yml and book/)")


def find_chapter(chapter: int | str | Path, root: Path | None = None) -> Path:
    """A chapter's notebook from its number (``1``, ``"01"``) or path."""
    if isinstance(chapter, Path) or (isinstance(chapter, str) and chapter.endswith(".ipynb")):
        path = Path(chapter)
        if not path.is_file():
            raise AssignmentError(f"no notebook at {path}")
        return path
    try:
        number = int(chapter)
    except (TypeError, ValueError) as error:
        raise AssignmentError(f"a chapter is a number like 1 or 13 or a notebook path, got {chapter!r}") from error
    root = root or book_root()
    matches = sorted((root / "book").glob(f"*/{number:02d}-*.ipynb"))
    if len(matches) != 1:
        available = sorted(int(path.name[:2]) for path in (root / "book").glob("*/[0-9][0-9]-*.ipynb"))
        raise AssignmentError(f"no chapter {number} under {root / 'book'} (chapters: {available})")
    return matches[0]


def _title(prompt: str, checker: str) -> str:
    matches = PROMPT_TITLE.findall(prompt)
    if matches:
        in_brackets, after = matches[-1]
        title = (in_brackets or after).strip()
        if title:
            return title
    return checker.removeprefix("check_").replace("_", " ")


def _check_arguments(call: str, where: str) -> tuple[str, ...]:
    """The variable names a check cell passes to its checker (positional or keyword)."""
    node = ast.parse(call.strip(), mode="eval").body
    values = list(node.args) + [keyword.value for keyword in node.keywords]
    if not all(isinstance(value, ast.Name) for value in values) or any(k.arg is None for k in node.keywords):
        raise AssignmentError(f"{where}: the check cell must pass plain variable names to the checker "
                              f"(the autograder reads them from the student's notebook), got {call.strip()!r}")
    return tuple(value.id for value in values)


def read_exercises(path: Path) -> list[Exercise]:
    """The exercises of a chapter notebook, each from its exercise, solution and check cells.

    Raises :class:`AssignmentError` naming the cell when the three cells are not there in that order.
    """
    path = Path(path)
    chapter = chapter_number(path)
    cells = _read_notebook(path)["cells"]
    exercises = []
    for index, cell in enumerate(cells):
        tags = _tags(cell)
        where = f"{path.name}, cell {index}"
        if SOLUTION_TAG in tags and not (index > 0 and EXERCISE_TAG in _tags(cells[index - 1])):
            raise AssignmentError(f"{where}: a solution cell must follow its exercise cell")
        if EXERCISE_TAG not in tags:
            continue
        if cell["cell_type"] != "code":
            raise AssignmentError(f"{where}: an exercise cell must be a code cell")
        if index + 2 >= len(cells) or SOLUTION_TAG not in _tags(cells[index + 1]):
            raise AssignmentError(f"{where}: the exercise cell must be followed by its solution cell (tag "
                                  f"{SOLUTION_TAG!r}) and a check cell")
        check = _source(cells[index + 2])
        match = CHECK_CALL.match(check)
        if cells[index + 2]["cell_type"] != "code" or not match:
            raise AssignmentError(f"{where}: the cell after the solution must be one check call like "
                                  f"mmt.exercises.ch{chapter:02d}.check_name(answer), got {check.strip()[:80]!r}")
        if match.group(1) != f"ch{chapter:02d}":
            raise AssignmentError(f"{where}: chapter {chapter} checks with mmt.exercises.{match.group(1)}")
        prompt = _source(cells[index - 1]) if index > 0 and cells[index - 1]["cell_type"] == "markdown" else ""
        exercises.append(Exercise(
            chapter=chapter, index=len(exercises) + 1, title=_title(prompt, match.group(2)),
            stub=_source(cell), solution=_source(cells[index + 1]), check_call=check.strip(),
            checker=match.group(2), arguments=_check_arguments(check, where),
            cells=(index, index + 1, index + 2)))
    return exercises


def read_points(path: Path | None) -> dict[str, float]:
    """Points per exercise from a YAML (or JSON) file: ``{"1.1": 2, "1.3": 0.5}`` (default: 1 each)."""
    if path is None:
        return {}
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise AssignmentError(f"{path}: expected a mapping of exercise numbers to points, like '1.1: 2'")
    points = {}
    for key, value in data.items():
        if not re.fullmatch(r"\d+\.\d+", str(key)):
            raise AssignmentError(f"{path}: {key!r} is not an exercise number like '1.1' (quote it in YAML)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AssignmentError(f"{path}: points for exercise {key} must be a number >= 0, got {value!r}")
        points[str(key)] = float(value)
    return points


# --------------------------------------------------------------------------------------------------
# The master notebook


def _cell(cell_type: str, source: str, **metadata) -> dict:
    cell = {"cell_type": cell_type, "metadata": dict(metadata), "source": source}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _raw(source: str) -> dict:
    return _cell("raw", source)


def _test_source(exercise: Exercise) -> str:
    """An Otter exception-based test: the chapter's own check call, on the student's variables."""
    parameters = ", ".join(dict.fromkeys(exercise.arguments))
    return (f"def test_{exercise.name}({parameters}):\n"
            f"    import mmtutorial as mmt\n"
            f"    {exercise.check_call}\n")


def _assignment_config(name: str) -> str:
    config = {
        "name": name,
        "init_cell": False,             # our own Otter cell goes after the set-up cell (it may pip install)
        "check_all_cell": True,
        "export_cell": {"pdf": False, "instructions": "Hand in the zip file this cell writes, or the notebook."},
        "run_tests": False,             # build_assignment grades the solutions itself, as a submission
        "show_question_points": True,
        "tests": {"files": False, "ok_format": False},
        "generate": {"pdf": False, "show_stdout": True},
    }
    return "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False)


def master_notebook(path: Path, points: dict[str, float] | None = None,
                    otter_requirement: str | None = None) -> dict:
    """The otter-grader master notebook of a chapter (see the module's docstring for what it holds)."""
    path = Path(path)
    notebook = _read_notebook(path)
    exercises = read_exercises(path)
    if not exercises:
        raise AssignmentError(f"{path.name} has no exercise cells (tag {EXERCISE_TAG!r}): nothing to grade")
    points = points or {}
    requirement = otter_requirement or otter_requirement_line()
    by_exercise_cell = {exercise.cells[0]: exercise for exercise in exercises}
    skipped = {index for exercise in exercises for index in exercise.cells[1:]}
    prompts = {exercise.cells[0] - 1 for exercise in exercises
               if notebook["cells"][exercise.cells[0] - 1]["cell_type"] == "markdown"}
    first_code = next(index for index, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code")

    cells = [_raw(_assignment_config(path.stem))]
    for index, cell in enumerate(notebook["cells"]):
        cell = copy.deepcopy(cell)
        cell.pop("id", None)            # otter writes new cells; ids are renumbered when it normalises
        if cell["cell_type"] == "code":
            cell.update(outputs=[], execution_count=None)
        if FOOTER_TAG in _tags(cell) or index in skipped or index in prompts:
            continue
        if index == first_code:
            cells.append(_cell("code", QUICK_SOURCE, tags=["assignment-setup"]))
            cells.append(cell)
            cells.append(_cell("code", OTTER_INIT_SOURCE.format(requirement=requirement, notebook=path.name),
                               tags=["assignment-setup"]))
            continue
        exercise = by_exercise_cell.get(index)
        if exercise is None:
            cells.append(cell)
            continue
        question = {"name": exercise.name, "points": float(points.get(exercise.number, 1.0))}
        if index - 1 in prompts:
            prompt = copy.deepcopy(notebook["cells"][index - 1])
            prompt.pop("id", None)
            cells_before = [prompt]
        else:
            cells_before = []
        # One answer cell: the stub (kept for the student) and the solution (kept for the autograder only).
        answer = (f"# BEGIN PROMPT\n{exercise.stub.rstrip()}\n# END PROMPT\n"
                  f"# BEGIN SOLUTION NO PROMPT\n{exercise.solution.rstrip()}\n# END SOLUTION")
        cells += [_raw("# BEGIN QUESTION\n" + yaml.safe_dump(question, sort_keys=False)), *cells_before,
                  _raw("# BEGIN SOLUTION"), _cell("code", answer, tags=[EXERCISE_TAG]), _raw("# END SOLUTION"),
                  _raw("# BEGIN TESTS"), _cell("code", _test_source(exercise)), _raw("# END TESTS"),
                  _raw("# END QUESTION")]
    master = dict(notebook, cells=cells)
    master.setdefault("metadata", {}).setdefault("kernelspec", {"display_name": "Python 3", "language": "python",
                                                                  "name": "python3"})
    return master


# --------------------------------------------------------------------------------------------------
# otter-grader's own environment


def otter_env_dir() -> Path:
    configured = os.environ.get(OTTER_ENV_VARIABLE, "").strip()
    return Path(configured).expanduser().resolve() if configured else book_root() / ".venv-otter"


def requirements_path() -> Path:
    return book_root() / REQUIREMENTS_FILE


def otter_requirement_line() -> str:
    """The pinned otter-grader requirement (``otter-grader==7.0.0``), for the student notebook's install line."""
    try:
        lines = requirements_path().read_text(encoding="utf-8").splitlines()
    except (OSError, AssignmentError):
        return "otter-grader"
    pinned = [line.strip() for line in lines if line.strip().startswith("otter-grader")]
    return pinned[0] if pinned else "otter-grader"


def _env_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _kernels_dir(venv: Path) -> Path:
    """A Jupyter data folder holding the one kernel the grading uses (passed as JUPYTER_PATH)."""
    return venv / "share" / "mmtutorial-jupyter"


def ensure_otter_env(venv: Path | None = None, *, quiet: bool = False) -> Path:
    """Create (or check) otter-grader's virtual environment; a second call with nothing changed installs nothing.

    The environment sits on top of the running (book) environment: a ``.pth`` file adds the book's
    site-packages after its own, so otter's pinned packages win where they differ and everything else
    (mmtutorial, torch, ipykernel) comes from the book. Its kernel, named ``python3`` like the chapters'
    kernel, runs this environment's Python.
    """
    venv = Path(venv) if venv is not None else otter_env_dir()
    requirements = requirements_path()
    book_site = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    wanted = hashlib.sha256((requirements.read_text(encoding="utf-8") + "\n".join(book_site)
                             + sys.version).encode()).hexdigest()
    stamp = venv / ".mmtutorial-installed"
    python = _env_python(venv)
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == wanted and python.exists():
        if not quiet:
            print(f"otter-grader: present in {venv}")
        return venv

    print(f"otter-grader: setting up {venv} from {requirements.name}", flush=True)
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)], "create otter-grader's virtual environment")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    lines = [f"import site; site.addsitedir({folder!r})" for folder in dict.fromkeys(book_site)]
    Path(site, "_mmtutorial_book_env.pth").write_text(
        "# mmtutorial: the book's environment, after otter-grader's own packages\n" + "\n".join(lines) + "\n",
        encoding="utf-8")
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
         f"install {requirements.name} (otter-grader from PyPI)")
    kernel = _kernels_dir(venv) / "kernels" / "python3"
    kernel.mkdir(parents=True, exist_ok=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (mmtutorial + otter-grader)", "language": "python"}, indent=1), encoding="utf-8")
    check = subprocess.run([str(python), "-c", "import otter, mmtutorial, ipykernel; print(otter.__version__)"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise AssignmentError(f"otter-grader's environment {venv} cannot import otter, mmtutorial and ipykernel:\n"
                              f"{check.stderr.strip()[-2000:]}")
    stamp.write_text(wanted + "\n", encoding="utf-8")
    print(f"otter-grader: installed {check.stdout.strip()} in {venv}")
    return venv


def _run(command: list[str], what: str, *, timeout_s: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; a failure or a time-out is an :class:`AssignmentError` that shows its output.

    The command runs in its own process group, so a time-out also ends what it started (the kernel that
    executes a submission, which would otherwise go on running, say, a student's endless loop).
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, **kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssignmentError(f"could not {what}: timed out after {timeout_s:.0f} s") from None
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise AssignmentError(f"could not {what} (exit {result.returncode}): {' '.join(command)}\n{output[-4000:]}")
    return result


def _otter_environment(venv: Path) -> dict[str, str]:
    environment = dict(os.environ, JUPYTER_PATH=str(_kernels_dir(venv)), PYTHONNOUSERSITE="1",
                       MMTUTORIAL_QUICK="1")
    environment.setdefault("OMP_NUM_THREADS", "1")   # small models: one thread is fastest, and leaves cores free
    environment["PATH"] = str(_env_python(venv).parent) + os.pathsep + environment.get("PATH", "")
    return environment


def _otter(venv: Path, *arguments: str, what: str, cwd: Path | None = None,
           timeout_s: float | None = None) -> subprocess.CompletedProcess:
    return _run([str(_env_python(venv)), "-m", "otter", *arguments], what, cwd=cwd, env=_otter_environment(venv),
                timeout_s=timeout_s)


# --------------------------------------------------------------------------------------------------
# Grading


@dataclass
class ExerciseResult:
    name: str
    score: float
    max_score: float
    feedback: str           # what the checker said (empty when the answer is right)


@dataclass
class Grade:
    """The grade of one submission: per exercise, and in total."""

    submission: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    error: str = ""         # set when the submission could not be graded at all

    @property
    def score(self) -> float:
        return sum(result.score for result in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(result.max_score for result in self.exercises)

    def scores(self) -> dict[str, float]:
        return {result.name: result.score for result in self.exercises}

    def feedback_text(self) -> str:
        lines = [f"{self.submission}: {self.score:g} / {self.max_score:g} points"]
        if self.error:
            lines.append(f"could not be graded: {self.error}")
        for result in self.exercises:
            lines.append(f"  {result.name}: {result.score:g} / {result.max_score:g}")
            lines += [f"      {line}" for line in result.feedback.splitlines()]
        return "\n".join(lines) + "\n"


# The last line of a failed Otter test case: the exception the checker raised, e.g.
# "ExerciseError: count_mlp_parameters([64, 10]): expected 650, got 640; did you forget the biases?"
FAILURE_LINE = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)): (.*)$",
                          re.MULTILINE)


def _feedback(output: str) -> str:
    """The part of Otter's test output a student needs: the checker's message, without Otter's frame."""
    messages = FAILURE_LINE.findall(output)
    if messages:
        return "\n".join(f"{kind}: {text.strip()}" for kind, text in messages)
    return output.strip()


def _parse_results(path: Path, submission: str) -> Grade:
    data = json.loads(path.read_text(encoding="utf-8"))
    grade = Grade(submission)
    for test in data.get("tests", []):
        if "max_score" not in test:      # Otter's "Public Tests" summary entry, for Gradescope
            continue
        name = str(test.get("name", "")).split(" - ")[0].split(" (")[0].strip()
        score, max_score = float(test.get("score") or 0.0), float(test.get("max_score") or 0.0)
        feedback = "" if score >= max_score else _feedback(str(test.get("output", "")))
        grade.exercises.append(ExerciseResult(name, score, max_score, feedback))
    return grade


def autograder_zip(assignment: Path) -> Path:
    """The autograder zip itself, or the one inside an assignment folder built by :func:`build_assignment`."""
    assignment = Path(assignment)
    if assignment.is_file() and assignment.suffix == ".zip":
        return assignment
    zips = sorted(assignment.glob("autograder/*.zip")) if assignment.is_dir() else []
    if len(zips) != 1:
        raise AssignmentError(f"expected an autograder .zip or an assignment folder holding one in autograder/, "
                              f"got {assignment} ({len(zips)} zip files found)")
    return zips[0]


def grade_submission(assignment: Path, submission: Path, *, venv: Path | None = None,
                     timeout_s: float = GRADING_TIMEOUT_S) -> Grade:
    """Grade one submission (``.ipynb``, or the ``.zip`` that the notebook's export cell writes) with ``otter run``.

    A submission that cannot be graded (not a notebook, or still running after ``timeout_s``) gets a
    :class:`Grade` with its ``error`` set and no points.
    """
    if timeout_s <= 0:
        raise AssignmentError(f"timeout_s must be positive, got {timeout_s}")
    venv = venv or otter_env_dir()
    archive = autograder_zip(assignment).resolve()
    submission = Path(submission).resolve()
    if not submission.is_file() or submission.suffix not in {".ipynb", ".zip"}:
        raise AssignmentError(f"a submission is a .ipynb or .zip file, got {submission}")
    with tempfile.TemporaryDirectory(prefix="mmtutorial-grade-") as folder:
        try:
            _otter(venv, "run", "--no-logo", "-a", str(archive), "-o", folder, str(submission),
                   what=f"grade {submission.name}", cwd=Path(folder), timeout_s=timeout_s)
        except AssignmentError as error:
            return Grade(submission.name, error=str(error).splitlines()[-1][:500])
        results = Path(folder) / "results.json"
        if not results.is_file():
            return Grade(submission.name, error="otter run wrote no results.json")
        return _parse_results(results, submission.name)


def grade(assignment: Path, submissions: list[Path], output: Path, *, jobs: int = 1,
          venv: Path | None = None, timeout_s: float = GRADING_TIMEOUT_S) -> list[Grade]:
    """Grade many submissions (files, or folders of them); write ``grades.csv`` and ``feedback/NAME.txt``."""
    files = []
    for item in map(Path, submissions):
        if item.is_dir():
            files += sorted(path for path in item.iterdir() if path.suffix in {".ipynb", ".zip"})
        else:
            files.append(item)
    if not files:
        raise AssignmentError(f"no submissions (.ipynb or .zip) in {', '.join(map(str, submissions))}")
    if jobs < 1:
        raise AssignmentError(f"jobs must be at least 1, got {jobs}")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        grades = list(pool.map(lambda path: grade_submission(assignment, path, venv=venv, timeout_s=timeout_s),
                               files))
    write_grades(grades, Path(output))
    return grades


def write_grades(grades: list[Grade], output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(result.name for grade in grades for result in grade.exercises))
    table = output / "grades.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["submission", *names, "total", "max", "error"])
        for grade in grades:
            scores = grade.scores()
            writer.writerow([grade.submission, *(f"{scores[name]:g}" if name in scores else "" for name in names),
                             f"{grade.score:g}", f"{grade.max_score:g}", grade.error])
    feedback = output / "feedback"
    feedback.mkdir(exist_ok=True)
    for grade in grades:
        (feedback / f"{Path(grade.submission).stem}.txt").write_text(grade.feedback_text(), encoding="utf-8")
    return table


# --------------------------------------------------------------------------------------------------
# Building an assignment


@dataclass
class Assignment:
    """What :func:`build_assignment` wrote for one chapter."""

    chapter: int
    folder: Path
    student: Path             # hand this out
    solutions: Path           # the autograder's notebook, with the solutions
    autograder: Path          # the zip that grades submissions
    exercises: list[Exercise]
    points: dict[str, float]  # question name -> points
    reference: Grade | None = None   # the solutions graded as a submission

    def summary_rows(self) -> list[str]:
        rows = []
        scores = self.reference.scores() if self.reference else {}
        for exercise in self.exercises:
            got = scores.get(exercise.name)
            rows.append(f"| {exercise.number} | `{exercise.name}` | {exercise.title} | `{exercise.checker}` | "
                        f"{self.points[exercise.name]:g} | {'' if got is None else f'{got:g}'} |")
        return rows


def build_assignment(chapter: int | str | Path, output: Path, *, points: dict[str, float] | None = None,
                     check: bool = True, venv: Path | None = None) -> Assignment:
    """Build one chapter's assignment into ``output/NN-name/``; with ``check``, grade its solutions too.

    Raises :class:`AssignmentError` when the reference solutions do not score full marks.
    """
    venv = venv or otter_env_dir()
    source = find_chapter(chapter)
    exercises = read_exercises(source)
    folder = Path(output).resolve() / source.stem
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    master = folder / "master" / source.name
    master.parent.mkdir()
    master.write_text(json.dumps(master_notebook(source, points), indent=1, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    # Data files a chapter reads relative to itself would be missing next to the copy; the book's chapters
    # read theirs through mmtutorial's cache, so nothing else is copied.
    _otter(venv, "assign", "--no-run-tests", "--no-pdfs", str(master), str(folder / "otter"),
           what=f"run otter assign on {source.name}", cwd=master.parent)
    student = folder / "student" / source.name
    solutions = folder / "autograder" / source.name
    student.parent.mkdir()
    solutions.parent.mkdir()
    shutil.copy2(folder / "otter" / "student" / source.name, student)
    shutil.copy2(folder / "otter" / "autograder" / source.name, solutions)
    zips = sorted((folder / "otter" / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise AssignmentError(f"otter assign wrote {len(zips)} autograder zips for {source.name}")
    autograder = solutions.parent / f"{source.stem}-autograder.zip"
    shutil.copy2(zips[0], autograder)
    question_points = {exercise.name: float((points or {}).get(exercise.number, 1.0)) for exercise in exercises}
    assignment = Assignment(chapter_number(source), folder, student, solutions, autograder, exercises,
                            question_points)
    if check:
        assignment.reference = grade_submission(autograder, solutions, venv=venv)
        lost = [f"{result.name} ({result.score:g}/{result.max_score:g}: {result.feedback[:300]})"
                for result in assignment.reference.exercises if result.score < result.max_score]
        if assignment.reference.error or lost or assignment.reference.max_score == 0:
            raise AssignmentError(f"the reference solutions of {source.name} do not score full marks: "
                                  f"{assignment.reference.error or '; '.join(lost) or 'no exercise was graded'}")
    return assignment


def build_assignments(chapters: list[int | str], output: Path, *, points: dict[str, float] | None = None,
                      check: bool = True, venv: Path | None = None) -> list[Assignment]:
    """Build several chapters' assignments and write ``output/README.md``, the table of what was built."""
    assignments = [build_assignment(chapter, output, points=points, check=check, venv=venv) for chapter in chapters]
    write_summary(assignments, Path(output) / "README.md")
    return assignments


def write_summary(assignments: list[Assignment], path: Path) -> Path:
    lines = ["# Assignments", "",
             "Built by `python -m mmtutorial assignments` from the chapters' exercise, solution and check cells.",
             "Hand out `student/*.ipynb`; grade with "
             "`python -m mmtutorial grade <chapter folder> <submissions>`.", ""]
    for assignment in assignments:
        reference = assignment.reference
        total = (f"reference solutions: {reference.score:g} / {reference.max_score:g}" if reference
                 else "reference solutions not graded: --no-check")
        lines += [f"## Chapter {assignment.chapter}: `{assignment.folder.name}` ({total})", "",
                  "| exercise | question | title | checker | points | reference score |",
                  "|---|---|---|---|---|---|", *assignment.summary_rows(), "",
                  f"- student notebook: `{assignment.student.relative_to(path.parent)}`",
                  f"- autograder: `{assignment.autograder.relative_to(path.parent)}`",
                  f"- solutions: `{assignment.solutions.relative_to(path.parent)}`", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def chapters_with_exercises(root: Path | None = None) -> list[int]:
    root = root or book_root()
    return [chapter_number(path) for path in sorted((root / "book").glob("*/[0-9][0-9]-*.ipynb"))
            if read_exercises(path)]
