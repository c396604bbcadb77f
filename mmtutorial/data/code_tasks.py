"""Chapter 23's code tasks: a small HumanEval-style benchmark and the family of training functions it comes from.

Every task is one Python function from a *template* (an operation: "add n to x", "keep the elements of xs
greater than n", "the first n characters of s", ...) and a *constant* n, written as HumanEval writes its
problems (Chen et al., 2021):

    prompt              the signature and the docstring, which the model must complete
    canonical_solution  the body
    test                ``def check(candidate): assert ...`` on several inputs
    entry_point         the function's name

The held-out tasks are the (template, constant) pairs chosen by :func:`is_held_out`; the training functions
(:func:`training_functions`) are drawn from every *other* pair.  A model therefore sees "add 3", "add 5" and
"multiply by 7" in training and is tested on "add 7": it must read the template from the name and docstring
and copy the constant into the body, which a model that only looks at the last few tokens cannot do.
No held-out prompt or solution ever appears in the training functions (a unit test checks the generated text
and the standard-library text they are mixed with).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["CodeTask", "TEMPLATES", "NUMBER_WORDS", "is_held_out", "held_out_tasks", "training_functions",
           "task_program", "all_pairs", "make_task", "task_inputs", "decontaminate", "leaks"]

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")


@dataclass(frozen=True)
class Template:
    """One operation of the family: how its name, docstring, body and tests are written for a constant n."""
    key: str
    name: str              # function name with {w} = the constant's English word
    argument: str          # the parameter's name
    doc: str               # docstring with {n}
    body: str              # the one-line body with {n}
    kind: str              # the argument's type: "int", "list" or "str" (decides the test inputs)
    constants: tuple       # the constants n this operation is written for


_RANGE = tuple(range(1, 13))


def task_inputs(kind: str, n: int) -> list:
    """Inputs that tell constant n apart from its neighbours n - 1 and n + 1 for every operation (values,
    lengths and elements on both sides of n), plus a few ordinary ones."""
    if kind == "int":
        return [0, 1, n - 1, n, n + 1, 2 * n + 1, n * n + n - 1, -3, 40]
    if kind == "list":
        return [[], list(range(n + 2)), [n, n, n + 1, n - 1, 3], [n + 1, 0, n, 2 * n, n + 1], [7, -1, 12]]
    if kind == "str":
        letters = "abcdefghijklmnopqrstuvwxyz"
        return ["", "a", letters[:n - 1], letters[:n], letters[:n + 1], "language model"]
    raise ValueError(f"kind must be 'int', 'list' or 'str', got {kind!r}")

TEMPLATES: tuple[Template, ...] = (
    Template("add", "add_{w}", "x", "Return x plus {n}.", "return x + {n}", "int", _RANGE),
    Template("subtract", "subtract_{w}", "x", "Return x minus {n}.", "return x - {n}", "int", _RANGE),
    Template("multiply", "multiply_by_{w}", "x", "Return x times {n}.", "return x * {n}", "int", _RANGE),
    Template("floordiv", "floor_divide_by_{w}", "x", "Return x divided by {n}, rounded down.", "return x // {n}",
             "int", _RANGE),
    Template("modulo", "remainder_by_{w}", "x", "Return the remainder of x divided by {n}.", "return x % {n}",
             "int", _RANGE),
    Template("greater", "is_greater_than_{w}", "x", "Return True if x is greater than {n}.", "return x > {n}",
             "int", _RANGE),
    Template("add_each", "add_{w}_to_each", "xs", "Return a list with {n} added to each element of xs.",
             "return [x + {n} for x in xs]", "list", _RANGE),
    Template("keep_greater", "keep_greater_than_{w}", "xs", "Return the elements of xs that are greater than {n}.",
             "return [x for x in xs if x > {n}]", "list", _RANGE),
    Template("count", "count_{w}s", "xs", "Return how many elements of xs are equal to {n}.",
             "return xs.count({n})", "list", _RANGE),
    Template("head", "first_{w}_items", "xs", "Return the first {n} elements of xs.", "return xs[:{n}]",
             "list", _RANGE),
    Template("tail", "drop_first_{w}_items", "xs", "Return xs without its first {n} elements.", "return xs[{n}:]",
             "list", _RANGE),
    Template("repeat", "repeat_{w}_times", "s", "Return s repeated {n} times.", "return s * {n}", "str", _RANGE),
    Template("prefix", "first_{w}_chars", "s", "Return the first {n} characters of s.", "return s[:{n}]",
             "str", _RANGE),
    Template("suffix", "last_{w}_chars", "s", "Return the last {n} characters of s.", "return s[-{n}:]",
             "str", _RANGE),
    Template("longer", "is_longer_than_{w}", "s", "Return True if s has more than {n} characters.",
             "return len(s) > {n}", "str", _RANGE),
)


@dataclass(frozen=True)
class CodeTask:
    """One HumanEval-style problem."""
    task_id: str            # "CodeTasks/<template>/<n>"
    prompt: str             # signature + docstring, ending in a newline: the model continues from here
    canonical_solution: str  # the body (indented, ending in a newline)
    test: str               # defines check(candidate)
    entry_point: str        # the function's name

    @property
    def function(self) -> str:
        """The whole reference function: prompt + canonical solution."""
        return self.prompt + self.canonical_solution


def _template(key: str) -> Template:
    for template in TEMPLATES:
        if template.key == key:
            return template
    raise ValueError(f"no template {key!r}; the templates are {[t.key for t in TEMPLATES]}")


def all_pairs() -> list[tuple[str, int]]:
    """Every (template key, constant) pair of the family, in a fixed order."""
    return [(t.key, n) for t in TEMPLATES for n in t.constants]


def is_held_out(key: str, n: int) -> bool:
    """The held-out pairs: about one constant in four of every template (a fixed, spread-out choice)."""
    index = [t.key for t in TEMPLATES].index(key)
    return (3 * index + n) % 4 == 0


def _expected(template: Template, n: int, value):
    scope: dict = {}
    exec(f"def f({template.argument}):\n    {template.body.format(n=n)}\n", scope)   # our own reference body
    return scope["f"](value)


def make_task(key: str, n: int) -> CodeTask:
    """The task of one (template, constant) pair."""
    template = _template(key)
    if n not in template.constants:
        raise ValueError(f"template {key!r} is written for constants {template.constants}, got {n!r}")
    name = template.name.format(w=NUMBER_WORDS[n])
    prompt = f'def {name}({template.argument}):\n    """{template.doc.format(n=n)}"""\n'
    solution = f"    {template.body.format(n=n)}\n"
    checks = "".join(f"    assert candidate({value!r}) == {_expected(template, n, value)!r}\n"
                     for value in task_inputs(template.kind, n))
    return CodeTask(task_id=f"CodeTasks/{key}/{n}", prompt=prompt, canonical_solution=solution,
                    test=f"def check(candidate):\n{checks}", entry_point=name)


def held_out_tasks(limit: int | None = None) -> list[CodeTask]:
    """The held-out tasks, interleaved across templates (so any prefix covers many templates)."""
    by_template = [[make_task(t.key, n) for n in t.constants if is_held_out(t.key, n)] for t in TEMPLATES]
    tasks = [task for row in zip(*by_template) for task in row]
    tasks += [task for row in by_template for task in row[min(map(len, by_template)):]]
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        tasks = tasks[:limit]
    return tasks


def training_functions(count: int, seed: int = 0) -> list[str]:
    """``count`` training functions drawn at random from the pairs that are *not* held out."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    pairs = [(key, n) for key, n in all_pairs() if not is_held_out(key, n)]
    rng = random.Random(seed)
    return [make_task(*rng.choice(pairs)).function for _ in range(count)]


def task_program(task: CodeTask, completion: str) -> str:
    """The program the sandbox runs for one completion: prompt + completion, the tests, then the check call."""
    if not isinstance(task, CodeTask):
        raise TypeError(f"task must be a CodeTask, got {type(task).__name__}")
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str of Python source, got {type(completion).__name__}")
    return f"{task.prompt}{completion}\n\n{task.test}\n\ncheck({task.entry_point})\n"


def _statement_pattern(tasks) -> re.Pattern | None:
    """Matches any solution statement of ``tasks`` as a whole (so "return x + 1" does not match "return x + 10")."""
    statements = sorted({line.strip() for task in tasks for line in task.canonical_solution.splitlines()
                         if line.strip()}, key=len, reverse=True)
    if not statements:
        return None
    return re.compile(r"(?<![\w.])(?:" + "|".join(re.escape(s) for s in statements) + r")(?![\w.(\[])")


def decontaminate(text: str, tasks) -> tuple[str, int]:
    """``text`` without the lines that contain a statement of a task's solution, and how many lines were
    dropped.  Real corpora hold benchmark answers by accident (the standard library's docs show
    ``return x * 2``); training on them would inflate the score on exactly those tasks."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    tasks = list(tasks)
    pattern = _statement_pattern(tasks)
    if pattern is None:
        return text, 0
    kept, dropped = [], 0
    for line in text.splitlines(keepends=True):
        if pattern.search(line):
            dropped += 1
        else:
            kept.append(line)
    return "".join(kept), dropped


def leaks(text: str, tasks) -> list[str]:
    """The ids of the tasks whose prompt, whole function or a solution statement occurs verbatim in ``text``:
    empty for a clean training text."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    tasks = list(tasks)
    pattern = _statement_pattern(tasks)
    found_statements = {match.group(0) for match in pattern.finditer(text)} if pattern is not None else set()
    found = []
    for task in tasks:
        statements = {line.strip() for line in task.canonical_solution.splitlines() if line.strip()}
        if task.prompt in text or task.function in text or statements & found_statements:
            found.append(task.task_id)
    return found
