"""The book's skeleton is consistent: table of contents, notebooks, citations, configuration.

These checks catch in a second what a full Sphinx build reports in a minute (or, for stripped outputs
and the install line, not at all). They read files only: no build, no network.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
BIB = BOOK / "references.bib"
CHAPTER_NAME = re.compile(r"^(\d{2})-[a-z0-9-]+\.ipynb$")
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIB_ENTRY = re.compile(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
INSTALL_LINE = re.compile(r'%pip install -q "mmtutorial\[book\] @ git\+(\S+?)"')
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def toc_files(toc: dict) -> list[str]:
    """Every `file:` entry of a jb-book toc, root first, in order."""
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            for key in ("chapters", "sections", "parts"):
                walk(entry.get(key, []))

    walk(toc.get("parts", []) + toc.get("chapters", []))
    return files


def resolve_toc_file(entry: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{entry}{suffix}"
        if path.is_file():
            return path
    return None


def notebooks() -> list[Path]:
    return sorted(path for path in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts)


def chapter_notebooks() -> list[Path]:
    return [path for path in notebooks() if CHAPTER_NAME.match(path.name)]


def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def cell_tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def markdown_texts() -> list[tuple[str, str]]:
    """(where, text) for every markdown page and every markdown cell under book/."""
    texts = [(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")) for path in BOOK.rglob("*.md")]
    for path in notebooks():
        for index, cell in enumerate(read_notebook(path)["cells"]):
            if cell["cell_type"] == "markdown":
                texts.append((f"{path.relative_to(ROOT)} cell {index}", cell_source(cell)))
    return texts


def bib_keys() -> list[str]:
    return [key for _, key in BIB_ENTRY.findall(BIB.read_text(encoding="utf-8"))]


# ------------------------------------------------------------------ table of contents


def test_toc_lists_only_existing_files():
    toc = load_yaml("_toc.yml")
    assert toc["format"] == "jb-book"
    missing = [entry for entry in toc_files(toc) if resolve_toc_file(entry) is None]
    assert not missing, f"_toc.yml lists files that do not exist (no .md or .ipynb): {missing}"


def test_toc_has_no_duplicates():
    files = toc_files(load_yaml("_toc.yml"))
    duplicates = sorted({entry for entry in files if files.count(entry) > 1})
    assert not duplicates, f"_toc.yml lists these twice: {duplicates}"


def test_every_page_under_book_is_in_the_toc():
    listed = {entry for entry in toc_files(load_yaml("_toc.yml"))}
    pages = [path for path in notebooks() + sorted(BOOK.rglob("*.md"))]
    unlisted = [str(path.relative_to(ROOT)) for path in pages
                if path.relative_to(ROOT).with_suffix("").as_posix() not in listed]
    assert not unlisted, f"pages under book/ missing from _toc.yml (the build skips them): {unlisted}"


def test_front_and_back_matter_exist():
    for name in ("intro", "setup", "notation", "glossary", "misconceptions", "bibliography"):
        assert (BOOK / f"{name}.md").is_file(), f"book/{name}.md is missing"


def test_relative_links_in_pages_point_to_existing_files():
    broken = []
    for path in BOOK.rglob("*.md"):
        for target in MARKDOWN_LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # external URL or anchor on the same page
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, f"relative links to missing files: {broken}"


# ------------------------------------------------------------------ notebooks


@pytest.mark.parametrize("path", notebooks(), ids=lambda path: path.name)
def test_notebook_outputs_are_stripped(path):
    for index, cell in enumerate(read_notebook(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {index} has outputs: run nbstripout (make strip)"
        assert cell.get("execution_count") is None, f"{path.name} cell {index} has an execution_count"


@pytest.mark.parametrize("path", notebooks(), ids=lambda path: path.name)
def test_notebook_kernel_is_python3(path):
    kernelspec = read_notebook(path)["metadata"].get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"{path.name}: kernelspec name {kernelspec.get('name')!r}"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda path: path.name)
def test_chapter_opens_with_numbered_title(path):
    first = read_notebook(path)["cells"][0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be markdown"
    heading = cell_source(first).splitlines()[0]
    number = int(CHAPTER_NAME.match(path.name).group(1))
    assert re.match(rf"^# {number}\. \S", heading), (
        f"{path.name}: expected a first line '# {number}. Title', got {heading!r}")


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda path: path.name)
def test_setup_cell_installs_from_the_book_repository(path):
    repository = load_yaml("_config.yml")["repository"]["url"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["urls"]["Repository"] == repository, (
        "pyproject.toml [project.urls] Repository and _config.yml repository.url differ")
    cells = read_notebook(path)["cells"]
    setup = next((cell for cell in cells if cell["cell_type"] == "code"), None)
    assert setup is not None, f"{path.name} has no code cell"
    match = INSTALL_LINE.search(cell_source(setup))
    assert match, f"{path.name}: the first code cell has no '%pip install -q \"mmtutorial[book] @ git+...\"' line"
    assert match.group(1) == repository, f"{path.name} installs from {match.group(1)}, expected {repository}"
    assert "import mmtutorial as mmt" in cell_source(setup), f"{path.name}: set-up cell does not import mmt"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda path: path.name)
def test_every_exercise_is_followed_by_a_collapsed_solution(path):
    cells = read_notebook(path)["cells"]
    for index, cell in enumerate(cells):
        if "exercise" not in cell_tags(cell):
            continue
        following = cells[index + 1] if index + 1 < len(cells) else None
        assert following is not None and "solution" in cell_tags(following), (
            f"{path.name} cell {index}: an 'exercise' cell must be followed by a 'solution' cell")
        assert "hide-input" in cell_tags(following), (
            f"{path.name} cell {index + 1}: solution cells are tagged 'hide-input' too (collapsed on the site)")
    for index, cell in enumerate(cells):
        if "solution" in cell_tags(cell):
            assert index > 0 and "exercise" in cell_tags(cells[index - 1]), (
                f"{path.name} cell {index}: a 'solution' cell must follow an 'exercise' cell")


# ------------------------------------------------------------------ bibliography


def test_bibliography_keys_are_unique_and_entries_complete():
    keys = bib_keys()
    assert keys, "book/references.bib has no entries"
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, f"duplicate keys in references.bib: {duplicates}"
    from pybtex.database import parse_file  # installed with sphinxcontrib-bibtex

    data = parse_file(str(BIB), bib_format="bibtex")
    for key, entry in data.entries.items():
        assert entry.persons.get("author"), f"{key}: no author"
        for field in ("title", "year"):
            assert entry.fields.get(field), f"{key}: no {field}"
        assert re.fullmatch(r"\d{4}", entry.fields["year"]), f"{key}: year {entry.fields['year']!r}"
        venue_fields = {"article": "journal", "inproceedings": "booktitle", "book": "publisher"}
        if entry.type in venue_fields:
            assert entry.fields.get(venue_fields[entry.type]), f"{key}: no {venue_fields[entry.type]}"
        if entry.type == "misc":
            assert entry.fields.get("url") or entry.fields.get("howpublished"), f"{key}: @misc needs a url"


def test_every_cited_key_exists():
    known = set(bib_keys())
    unknown = []
    for where, text in markdown_texts():
        for group in CITE.findall(text):
            unknown += [f"{key.strip()} ({where})" for key in group.split(",") if key.strip() not in known]
    assert not unknown, f"cited keys missing from book/references.bib: {unknown}"


def test_bibliography_page_lists_everything():
    text = (BOOK / "bibliography.md").read_text(encoding="utf-8")
    assert "```{bibliography}" in text and ":all:" in text


# ------------------------------------------------------------------ configuration and offline assets


def test_config_settings():
    config = load_yaml("_config.yml")
    assert config["author"] == "The mmtutorial authors"
    assert config["only_build_toc_files"] is True
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["execute"]["timeout"] >= 600
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["branch"] == "main"
    sphinx = config["sphinx"]
    assert "sphinxcontrib.mermaid" in sphinx["extra_extensions"]
    assert sphinx["config"]["nb_merge_streams"] is True
    for extension, folder in sphinx.get("local_extensions", {}).items():
        assert (ROOT / folder / f"{extension}.py").is_file(), f"local extension {extension} not in {folder}"
    extensions = config["parse"]["myst_enable_extensions"]
    assert {"colon_fence", "dollarmath", "amsmath"} <= set(extensions)
    if "linkify" in extensions:
        assert importlib.util.find_spec("linkify_it") is not None, "myst linkify needs linkify-it-py"


def test_vendored_asset_paths_agree_with_the_vendor_script():
    """_config.yml points Mermaid and MathJax at the files scripts/vendor_assets.sh installs."""
    sphinx_config = load_yaml("_config.yml")["sphinx"]["config"]
    script = (ROOT / "scripts" / "vendor_assets.sh").read_text(encoding="utf-8")
    assert sphinx_config["mermaid_use_local"] == "vendor/mermaid/mermaid.esm.min.mjs"
    assert sphinx_config["mathjax_path"] == "vendor/mathjax/tex-mml-chtml.js"
    assert 'vendor=_static/vendor' in script
    assert '"$staging/mermaid/mermaid.esm.min.mjs"' in script
    assert '"$staging/mathjax/tex-mml-chtml.js"' in script
    assert "_static/vendor/" in (ROOT / ".gitignore").read_text(encoding="utf-8")


def _load_script_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vendored_files_are_not_added_to_every_page():
    module = _load_script_module("sphinx_vendor_assets")

    class Config:
        html_js_files = ["vendor/mathjax/tex-mml-chtml.js", ("vendor/mathjax/ui/menu.js", {}), "extra.js"]
        html_css_files = ["custom.css", "vendor/mermaid/x.css"]

    config = Config()
    module.drop_vendored_files(None, config)
    assert config.html_js_files == ["extra.js"]
    assert config.html_css_files == ["custom.css"]


def test_build_script_detects_remote_assets(tmp_path):
    build_book = _load_script_module("build_book")
    page = tmp_path / "page.html"
    page.write_text('<script src="../_static/vendor/mathjax/tex-mml-chtml.js"></script>\n'
                    '<script type="module">import mermaid from "../_static/vendor/mermaid/mermaid.esm.min.mjs";'
                    "</script>", encoding="utf-8")
    assert build_book.remote_assets(tmp_path) == []
    page.write_text('<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>\n'
                    '<script type="module">import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@11/dist/'
                    'mermaid.esm.min.mjs";</script>', encoding="utf-8")
    assert len(build_book.remote_assets(tmp_path)) == 2


def test_build_script_config_overrides(tmp_path):
    build_book = _load_script_module("build_book")
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text(encoding="utf-8"), encoding="utf-8")
    checked = yaml.safe_load(build_book.write_config(tmp_path, execute=False, quick=False).read_text())
    assert checked["execute"]["execute_notebooks"] == "off"
    full = yaml.safe_load(build_book.write_config(tmp_path, execute=True, quick=False).read_text())
    quick = yaml.safe_load(build_book.write_config(tmp_path, execute=True, quick=True).read_text())
    assert full["execute"]["execute_notebooks"] == "cache"
    assert full["execute"]["cache"] != quick["execute"]["cache"], "QUICK and full runs must not share a cache"
    for folder in full["sphinx"].get("local_extensions", {}).values():
        assert Path(folder).is_absolute()


def test_shared_chapter_cells_are_as_the_script_writes_them():
    """The Colab link and the set-up cell of every chapter come from scripts/chapter_cells.py's one table."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "chapter_cells.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run `python scripts/chapter_cells.py`: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda path: path.name)
def test_setup_cell_names_every_extra_module_the_chapter_imports(path):
    """A module the chapter imports that is neither the standard library nor a core dependency must be in the
    set-up cell's NEEDS, so that Colab installs it before the chapter needs it."""
    import sys as system
    core = {"torch", "torchvision", "numpy", "sklearn", "skimage", "matplotlib", "tqdm", "scipy", "mmtutorial",
            "IPython", "threadpoolctl"}      # threadpoolctl comes with scikit-learn
    sources = [cell_source(cell) for cell in read_notebook(path)["cells"] if cell["cell_type"] == "code"]
    imported = {match.group(1) for source in sources
                for match in re.finditer(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", source, re.MULTILINE)}
    needs = re.search(r"NEEDS = \(([^)]*)\)", sources[0])
    assert needs, f"{path.name}: the set-up cell has no NEEDS = (...) line"
    named = set(re.findall(r'"([^"]+)"', needs.group(1)))
    missing = sorted(imported - set(system.stdlib_module_names) - core - named)
    assert not missing, f"{path.name} imports {missing}, which its set-up cell does not install"


def test_progress_bars_collapse_to_what_a_terminal_shows():
    spec = importlib.util.spec_from_file_location("sphinx_progress_lines", ROOT / "scripts" / "sphinx_progress_lines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    redraws = "\r  0%|          | 0/3\r 33%|###3      | 1/3\r100%|##########| 3/3, loss=0.1\n"
    assert module.collapse_carriage_returns("epoch 1\n" + redraws + "done") == \
        "epoch 1\n100%|##########| 3/3, loss=0.1\ndone"
    assert module.collapse_carriage_returns("no bar here\n") == "no bar here\n"
    assert module.collapse_carriage_returns("last drawing kept\r") == "last drawing kept"


def test_a_progress_bar_sent_as_many_stream_outputs_renders_as_one_line():
    """The kernel sends each tqdm redraw as its own stream output; on the website only the last one remains."""
    from nbformat import NotebookNode
    spec = importlib.util.spec_from_file_location("sphinx_progress_lines", ROOT / "scripts" / "sphinx_progress_lines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._patch_myst_nb_stream_merging()
    from myst_nb.core import render
    redraws = [NotebookNode(output_type="stream", name="stderr", text=f"\rtraining: {p:3d}%") for p in (0, 50, 100)]
    outputs = render.coalesce_streams(redraws + [NotebookNode(output_type="stream", name="stderr", text="\n")])
    assert [output["text"] for output in outputs] == ["training: 100%\n"]
