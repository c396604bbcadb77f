"""The package's layers point one way and no modules import each other.

Every module of ``mmtutorial`` is parsed with ``ast`` (imports inside functions included) and each import
of another module of the package is checked against the layer table in ``mmtutorial/__init__.py``'s
docstring: a module may import from its own layer or a lower one.  No import cycle may exist between
modules, and the static figures (``viz``) never import the widgets.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmtutorial"
ROW = re.compile(r"^\s{4}(\d)\s{2,}(\S.*?)\s{2,}\S")


def layer_table() -> dict[str, int]:
    """Top-level module or sub-package name -> layer number, read from the package docstring."""
    docstring = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8")))
    table = {}
    for line in docstring.splitlines():
        match = ROW.match(line)
        if match:
            for name in match.group(2).split():
                table[name] = int(match.group(1))
    return table


def module_name(path: Path) -> str:
    parts = ("mmtutorial",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that ``name`` imports anywhere in its file (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name.startswith("mmtutorial"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("mmtutorial"):
                continue
            submodules = {f"{source}.{alias.name}" for alias in node.names} & known
            targets.update(submodules or {source})   # "from . import x" names module x; else the source itself
    return {target for target in targets if target != name}


def layer_of(name: str, table: dict[str, int]) -> int:
    if name == "mmtutorial":
        return 0       # the root imports only the ground; everything else it reaches lazily by name
    top = name.split(".")[1]
    if top not in table:
        raise AssertionError(f"{name} is in no layer: add {top!r} to the table in mmtutorial/__init__.py")
    return table[top]


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def layer_violations(graph: dict[str, set[str]], table: dict[str, int]) -> list[str]:
    return sorted(f"{name} (layer {layer_of(name, table)}) imports {target} (layer {layer_of(target, table)})"
                  for name, targets in graph.items() for target in targets
                  if layer_of(target, table) > layer_of(name, table))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each a sorted list."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_layer_table_covers_every_top_level_module():
    table = layer_table()
    tops = {name.split(".")[1] for name in all_modules() if name != "mmtutorial"}
    assert tops <= set(table), f"modules in no layer: {sorted(tops - set(table))}"
    assert table["config"] == 0 and table["zoo"] > table["models"] > table["nn"] > table["data"]


def test_imports_point_down():
    violations = layer_violations(import_graph(), layer_table())
    assert not violations, "imports from a lower layer to a higher one:\n" + "\n".join(violations)


def test_no_import_cycles():
    cycles = import_cycles(import_graph())
    assert not cycles, f"import cycles: {cycles}"


def test_static_figures_never_import_widgets():
    assert "mmtutorial.widgets" not in import_graph()["mmtutorial.viz"]


def test_the_checker_finds_what_it_should():
    """The checker itself: an upward import and a two-module cycle on a made-up graph are reported."""
    table = {"config": 0, "models": 4}
    graph = {"mmtutorial.config": {"mmtutorial.models.gpt"}, "mmtutorial.models.gpt": {"mmtutorial.config"}}
    assert layer_violations(graph, table) == [
        "mmtutorial.config (layer 0) imports mmtutorial.models.gpt (layer 4)"]
    assert import_cycles(graph) == [["mmtutorial.config", "mmtutorial.models.gpt"]]


@pytest.mark.parametrize("source", ["import mmtutorial.models.gpt", "from ..models import gpt",
                                    "from ..models.gpt import GPT", "def f():\n    from ..models.gpt import GPT"])
def test_every_import_form_is_seen(tmp_path, source):
    path = tmp_path / "config.py"
    path.write_text(source + "\n", encoding="utf-8")
    found = imported_modules("mmtutorial.data.config", path, {"mmtutorial.models.gpt", "mmtutorial.models"})
    assert found == {"mmtutorial.models.gpt"}


def definitions(path: Path) -> set[str]:
    """Names of the functions, classes and module-level constants a file defines."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def test_key_maps_and_foreign_loaders_live_in_the_zoo():
    """Nothing outside ``zoo/`` maps another library's weight names onto ours."""
    foreign = re.compile(r"key_map|KEY_MAP|from_torch|load_from_torch|load_hf|from_openclip|load_openclip|torchvision_vit")
    offenders = sorted(f"{name}: {definition}" for name, path in all_modules().items()
                       if not name.startswith("mmtutorial.zoo")
                       for definition in definitions(path) if foreign.search(definition))
    assert not offenders, "weights loading outside mmtutorial.zoo:\n" + "\n".join(offenders)


def test_architectures_do_not_train():
    """``nn``, ``encoders`` and ``models`` hold architectures: they never import the training loop."""
    offenders = sorted(f"{name} imports {target}" for name, targets in import_graph().items()
                       if name.split(".")[1:2] and name.split(".")[1] in ("nn", "encoders", "models")
                       for target in targets if target.startswith("mmtutorial.training"))
    assert not offenders, "\n".join(offenders)


def test_one_vision_transformer():
    """One ViT tower (``models/vit.py``) that every image Transformer configures."""
    offenders = sorted(f"{name}.{definition}" for name, path in all_modules().items()
                       if name != "mmtutorial.models.vit"
                       for definition in definitions(path) if re.search(r"PatchEmbed|VisionTransformer|VisionTower|ViT", definition))
    assert not offenders, "a second ViT outside mmtutorial.models.vit: " + ", ".join(offenders)
