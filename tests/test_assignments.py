"""Chapters as assignments: the student notebooks and otter-grader autograders of ``mmtutorial.assignments``.

The fast tests read every chapter's exercise cells and check the derived master and student notebooks. The
round trip builds three chapters' assignments with otter-grader (in its own environment, ``.venv-otter``,
which ``make setup`` creates) and grades three submissions of each, as a teacher would:

- the reference solutions score full marks (``build_assignment`` refuses an assignment where they do not);
- the untouched student notebook scores zero on every exercise, with the checker's message as feedback;
- a notebook with every answer right but one deliberately wrong answer loses exactly that exercise's points
  (worth 2 of the chapter's points here, the others 1), and its feedback is the checker's hint.

Grading runs the whole chapter in QUICK mode, as the student notebook sets it (about 15-25 s a notebook).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from mmtutorial import assignments
from mmtutorial.assignments import AssignmentError

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(path for path in (ROOT / "book").glob("*/[0-9][0-9]-*.ipynb"))

# A deliberately wrong answer per chapter: a mistake a student makes, the exercise it answers, and words of
# the checker's hint that the student's feedback must contain.
WRONG_ANSWERS = {
    1: ("1.3", "def count_mlp_parameters(sizes):\n"
               "    return sum(d_in * d_out for d_in, d_out in zip(sizes[:-1], sizes[1:]))  # no biases\n",
        "forget the biases"),
    4: ("4.1", "def fbeta(y_true, y_pred, beta):\n"
               "    precision, recall, _ = mmt.metrics.precision_recall_f1(y_true, y_pred)\n"
               "    if precision == 0.0 and recall == 0.0:\n"
               "        return 0.0\n"
               "    return (1 + beta) * precision * recall / (beta * precision + recall)  # beta, not beta**2\n",
        "beta**2"),
    13: ("13.1", "def cosine(a, b):\n"
                 "    return float(np.dot(a, b) / np.dot(a, a))  # divides by ||a||^2, not ||a|| ||b||\n",
         "||a|| ||b||"),
    # a chapter whose exercises run learners' programs in the sandbox (23.3), graded inside otter
    23: ("23.1", "def pass_at_k(n, c, k):\n"
                 "    return 1 - (1 - c / n) ** k  # the naive estimator: draws with replacement\n",
         "the naive 1 - (1 - c/n)^k"),
}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


# --------------------------------------------------------------------------------------------------
# Reading the chapters (no otter needed)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.stem)
def test_every_exercise_has_a_solution_and_a_checker_of_its_chapter(path):
    exercises = assignments.read_exercises(path)
    assert exercises, f"{path.name} has no exercises"
    checkers = importlib.import_module(f"mmtutorial.exercises.ch{exercises[0].chapter:02d}")
    for exercise in exercises:
        assert callable(getattr(checkers, exercise.checker, None)), f"{exercise.check_call}: no such checker"
        assert exercise.arguments, f"{exercise.number}: the checker is called with nothing to check"
        assert exercise.stub.strip() and exercise.solution.strip() and exercise.stub != exercise.solution
    assert [exercise.name for exercise in exercises] == [f"ex{exercises[0].chapter}_{k}"
                                                         for k in range(1, len(exercises) + 1)]


def test_master_notebook_is_the_chapter_with_questions_in_place_of_exercises():
    chapter = assignments.find_chapter(1)
    original = _cells(chapter)
    exercises = assignments.read_exercises(chapter)
    master = assignments.master_notebook(chapter, {"1.3": 2})["cells"]
    sources = [_source(cell) for cell in master]

    assert sources[0].startswith("# ASSIGNMENT CONFIG")
    # Every cell of the chapter but the exercises' own three is there once, in order: prose and set-up kept.
    own = {index for exercise in exercises for index in exercise.cells}
    kept = [_source(cell) for index, cell in enumerate(original) if index not in own   # the run footer is left
            and "run-footer" not in cell.get("metadata", {}).get("tags", [])]        # out (next test)
    positions = [sources.index(source) for source in kept]
    assert positions == sorted(positions)
    # QUICK mode is switched on before the set-up cell imports mmtutorial, Otter's cell comes after it.
    setup = next(index for index, source in enumerate(sources) if "import mmtutorial as mmt" in source)
    assert 'os.environ["MMTUTORIAL_QUICK"] = "1"' in sources[setup - 1]
    assert "grader = otter.Notebook(" in sources[setup + 1]
    # Each exercise is a question whose answer cell holds the stub for the student and the solution for the
    # autograder, and whose test is the chapter's own check call.
    for exercise in exercises:
        question = sources.index(f"# BEGIN QUESTION\nname: {exercise.name}\npoints: "
                                 f"{2.0 if exercise.number == '1.3' else 1.0}\n")
        answer = next(source for source in sources[question:] if "# BEGIN SOLUTION NO PROMPT" in source)
        assert exercise.stub.rstrip() in answer and exercise.solution.rstrip() in answer
        test = next(source for source in sources[question:] if source.startswith(f"def test_{exercise.name}("))
        assert exercise.check_call in test
        assert exercise.check_call not in [_source(cell) for cell in master if cell["cell_type"] == "code"
                                           and not _source(cell).startswith("def test_")]


def test_the_run_footer_cell_is_left_out_of_assignments(tmp_path):
    notebook = json.loads(assignments.find_chapter(1).read_text(encoding="utf-8"))
    notebook["cells"].append({"cell_type": "code", "execution_count": None, "id": "run-footer", "outputs": [],
                              "metadata": {"tags": ["remove-input", "run-footer"]},
                              "source": "print(mmt.config.run_footer(device))"})
    path = tmp_path / "01-neurons-forward-pass.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    master = assignments.master_notebook(path)
    assert not any("run_footer" in _source(cell) for cell in master["cells"])


def test_a_chapter_whose_exercise_lacks_its_cells_is_refused_naming_the_cell(tmp_path):
    notebook = json.loads(assignments.find_chapter(1).read_text(encoding="utf-8"))
    cells = notebook["cells"]
    exercise = next(index for index, cell in enumerate(cells) if "exercise" in cell["metadata"].get("tags", []))
    del cells[exercise + 2]                                     # the check cell
    path = tmp_path / "01-neurons-forward-pass.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    with pytest.raises(AssignmentError, match=rf"cell {exercise}: the cell after the solution must be one check"):
        assignments.read_exercises(path)
    del cells[exercise + 1]                                     # and the solution
    path.write_text(json.dumps(notebook), encoding="utf-8")
    with pytest.raises(AssignmentError, match=rf"cell {exercise}: the exercise cell must be followed by its solution"):
        assignments.read_exercises(path)


def test_points_files_are_checked(tmp_path):
    good = tmp_path / "points.yml"
    good.write_text('"1.1": 2\n"1.3": 0.5\n', encoding="utf-8")
    assert assignments.read_points(good) == {"1.1": 2.0, "1.3": 0.5}
    for text, message in (("ex1_1: 2\n", "not an exercise number"), ('"1.1": -1\n', "must be a number >= 0"),
                          ('"1.1": yes\n', "must be a number >= 0"), ("- 1\n", "expected a mapping")):
        good.write_text(text, encoding="utf-8")
        with pytest.raises(AssignmentError, match=message):
            assignments.read_points(good)


def test_unknown_chapters_and_submissions_are_refused(tmp_path):
    with pytest.raises(AssignmentError, match="no chapter 99"):
        assignments.find_chapter(99)
    with pytest.raises(AssignmentError, match="a chapter is a number"):
        assignments.find_chapter("one")
    with pytest.raises(AssignmentError, match="autograder .zip or an assignment folder"):
        assignments.autograder_zip(tmp_path)
    with pytest.raises(AssignmentError, match="no submissions"):
        assignments.grade(tmp_path, [tmp_path], tmp_path / "grades")


def test_a_submission_that_runs_too_long_is_stopped_with_what_it_started(tmp_path):
    """Grading runs students' code: an endless loop must end, kernel included (the process group is killed)."""
    import subprocess
    import sys
    import time

    marker = tmp_path / "child.pid"
    endless = ("import subprocess, sys, time; "
               f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
               f"open({str(marker)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    start = time.monotonic()
    with pytest.raises(AssignmentError, match="timed out after 2 s"):
        assignments._run([sys.executable, "-c", endless], "grade endless.ipynb", timeout_s=2)
    assert time.monotonic() - start < 20
    child = int(marker.read_text())
    time.sleep(0.2)
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(child)], capture_output=True, text=True).stdout.strip()
    # ps's first letter is the state (Z: a zombie, gone but for its exit status); flags follow, e.g. N under nice.
    assert state[:1] in {"", "Z"}, f"the grandchild {child} still runs (state {state!r})"
    with pytest.raises(AssignmentError, match="timeout_s must be positive"):
        assignments.grade_submission(tmp_path, tmp_path / "x.ipynb", timeout_s=0)


# --------------------------------------------------------------------------------------------------
# The round trip, with otter-grader


@pytest.fixture(scope="module")
def otter_env():
    """otter-grader's environment; `make setup` creates it (a second call installs nothing)."""
    return assignments.ensure_otter_env(quiet=True)


def _answered(student: Path, exercises: list[assignments.Exercise], wrong: str, wrong_answer: str,
              destination: Path) -> Path:
    """The student notebook with every stub replaced by the chapter's solution, but one wrong answer."""
    notebook = json.loads(student.read_text(encoding="utf-8"))
    by_stub = {exercise.stub.rstrip(): exercise for exercise in exercises}
    answered = set()
    for cell in notebook["cells"]:
        exercise = by_stub.get(_source(cell).rstrip()) if cell["cell_type"] == "code" else None
        if exercise is not None:
            cell["source"] = wrong_answer if exercise.number == wrong else exercise.solution
            answered.add(exercise.number)
    assert answered == {exercise.number for exercise in exercises}, "a stub is missing from the student notebook"
    destination.write_text(json.dumps(notebook, indent=1, ensure_ascii=False), encoding="utf-8")
    return destination


@pytest.mark.slow
@pytest.mark.parametrize("chapter", sorted(WRONG_ANSWERS))
def test_round_trip_reference_full_marks_untouched_zero_one_wrong_answer_loses_its_points(
        chapter, otter_env, tmp_path):
    wrong, wrong_answer, hint = WRONG_ANSWERS[chapter]
    points = {wrong: 2.0}
    assignment = assignments.build_assignment(chapter, tmp_path / "assignments", points=points, venv=otter_env)
    exercises = assignment.exercises
    maximum = sum(points.get(exercise.number, 1.0) for exercise in exercises)

    # The student notebook is the chapter without its solutions: every stub verbatim, no solution.
    student_text = assignment.student.read_text(encoding="utf-8")
    student_sources = [_source(cell) for cell in json.loads(student_text)["cells"]]
    for exercise in exercises:
        assert exercise.stub.rstrip() in student_sources
        assert not any(exercise.solution.strip() in source for source in student_sources)
    assert any('os.environ["MMTUTORIAL_QUICK"] = "1"' in source for source in student_sources)

    # 1. The reference solutions score full marks on every exercise.
    reference = assignment.reference
    assert reference is not None and not reference.error
    assert reference.scores() == {exercise.name: points.get(exercise.number, 1.0) for exercise in exercises}
    assert reference.score == reference.max_score == maximum

    # 2. The untouched student notebook scores zero on every exercise; 3. one wrong answer loses its points.
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    untouched = submissions / "untouched.ipynb"
    untouched.write_text(student_text, encoding="utf-8")
    _answered(assignment.student, exercises, wrong, wrong_answer, submissions / "one_wrong.ipynb")
    grades = {Path(result.submission).stem: result
              for result in assignments.grade(assignment.folder, [submissions], tmp_path / "grades", jobs=2,
                                              venv=otter_env)}
    assert not grades["untouched"].error and not grades["one_wrong"].error

    untouched_grade = grades["untouched"]
    assert untouched_grade.scores() == {exercise.name: 0.0 for exercise in exercises}
    assert untouched_grade.max_score == maximum
    for result in untouched_grade.exercises:
        assert "ExerciseError" in result.feedback, f"{result.name}: no checker message in {result.feedback!r}"

    one_wrong = grades["one_wrong"]
    wrong_name = next(exercise.name for exercise in exercises if exercise.number == wrong)
    assert one_wrong.scores() == {exercise.name: 0.0 if exercise.name == wrong_name else
                                  points.get(exercise.number, 1.0) for exercise in exercises}
    assert one_wrong.score == maximum - points[wrong]
    feedback = next(result.feedback for result in one_wrong.exercises if result.name == wrong_name)
    assert hint in feedback, f"the feedback on {wrong_name} does not say what was expected: {feedback!r}"

    # What the teacher reads: one row per submission, one feedback file per submission.
    table = (tmp_path / "grades" / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert table[0].split(",")[:len(exercises) + 1] == ["submission", *(exercise.name for exercise in exercises)]
    assert len(table) == 3
    assert hint in (tmp_path / "grades" / "feedback" / "one_wrong.txt").read_text(encoding="utf-8")
