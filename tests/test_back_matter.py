"""The back matter is complete: glossary, misconceptions and bibliography.

Conventions checked here (they read files only: no build, no network):

- A chapter marks a term it defines with the MyST role {term}`term` (or {term}`shown text <term>`); every such
  target must be an entry of book/glossary.md's ``:::{glossary}`` block, and every entry there has an English
  line, a Chinese line and a one-sentence definition.
- Every ``### `` entry of book/misconceptions.md links to the
  chapter notebook that proves it, ``[Chapter N](partX-.../NN-....ipynb)``; the notebook exists and its number
  is N; an ``#anchor`` or a named section (``[Chapter N, § Section title](...)``) must match one of its headings.
- Every entry of book/references.bib has an author (a ``@misc`` web page with a url may name an editor or an
  organisation instead), a four-digit year, and a venue or a url. That every cited key exists is checked by
  tests/test_book_config.py::test_every_cited_key_exists.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from test_book_config import BIB, BOOK, ROOT, cell_source, chapter_notebooks, markdown_texts, read_notebook

GLOSSARY = BOOK / "glossary.md"
MISCONCEPTIONS = BOOK / "misconceptions.md"
TERM_ROLE = re.compile(r"\{term\}`([^`]+)`")
TARGET_IN_ANGLES = re.compile(r"<([^<>]+)>\s*$")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
CHAPTER_LINK = re.compile(r"\[([^\]]*)\]\((part[^)\s/]+/(\d{2})-[a-z0-9-]+\.ipynb)(?:#([^)\s]+))?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
REFERENCES_SECTION = "## References"
VENUE_FIELDS = ("journal", "booktitle", "publisher", "school", "institution", "howpublished", "url")


# ------------------------------------------------------------------ glossary


def glossary_entries(text: str | None = None) -> list[dict]:
    """The entries of the ``:::{glossary}`` block: term lines (English first) and the indented definition."""
    text = GLOSSARY.read_text(encoding="utf-8") if text is None else text
    block = re.search(r"^:::\{glossary\}\n(.*?)^:::\s*$", text, re.MULTILINE | re.DOTALL)
    assert block, "book/glossary.md has no ':::{glossary}' ... ':::' block"
    entries: list[dict] = []
    for line in block.group(1).splitlines():
        if not line.strip() or re.fullmatch(r":\w+:.*", line):
            continue  # blank line or a directive option such as :sorted:
        if line[0].isspace():
            assert entries, f"glossary: a definition line before any term: {line!r}"
            entries[-1]["definition"].append(line.strip())
        elif entries and not entries[-1]["definition"] and not (CJK.search(entries[-1]["terms"][-1])
                                                                and not CJK.search(line)):
            entries[-1]["terms"].append(line.strip())  # a further term line of the same entry
        # (an English line right after a Chinese one starts a new entry: the previous one lacks a definition)
        else:
            entries.append({"terms": [line.strip()], "definition": []})
    return entries


def normalise_term(term: str) -> str:
    """Sphinx looks glossary terms up case-insensitively, with runs of white space collapsed."""
    return " ".join(term.split()).lower()


def glossary_terms() -> set[str]:
    return {normalise_term(term) for entry in glossary_entries() for term in entry["terms"]}


def term_targets(text: str) -> list[str]:
    """The glossary term each {term} role of a markdown text points to."""
    targets = []
    for content in TERM_ROLE.findall(text):
        explicit = TARGET_IN_ANGLES.search(content)
        targets.append((explicit.group(1) if explicit else content).strip())
    return targets


def test_glossary_entries_have_english_chinese_and_a_definition():
    entries = glossary_entries()
    assert len(entries) > 50, f"only {len(entries)} glossary entries parsed: is the block's format unchanged?"
    problems = []
    for entry in entries:
        english, *others = entry["terms"]
        if CJK.search(english) or not re.search(r"[A-Za-z0-9]", english):
            problems.append(f"{english!r}: the first line must be the English term")
        if not others or not all(CJK.search(line) for line in others):
            problems.append(f"{english!r}: the line after the English term must be the Chinese term")
        definition = " ".join(entry["definition"])
        if len(definition) < 20 or not definition.rstrip().endswith((".", ")")):
            problems.append(f"{english!r}: no one-sentence definition (an indented line ending with a full stop)")
    assert not problems, "glossary entries malformed:\n" + "\n".join(problems)


def test_glossary_terms_are_unique():
    seen: dict[str, str] = {}
    duplicates = []
    for entry in glossary_entries():
        for term in entry["terms"]:
            key = normalise_term(term)
            if key in seen:
                duplicates.append(f"{term!r} (also in the entry {seen[key]!r})")
            seen[key] = entry["terms"][0]
    assert not duplicates, f"glossary terms defined twice (Sphinx warns, the -W build fails): {duplicates}"


def test_glossary_parser_reads_the_directive_format():
    """Guards the parser itself: a term, its Chinese term, a two-line definition, and an option line."""
    text = ":::{glossary}\n:sorted:\nlayer\n层\n  One step of a network.\n  Second line.\n\nbatch\n批量\n  A group.\n:::\n"
    entries = glossary_entries(text)
    assert entries == [{"terms": ["layer", "层"], "definition": ["One step of a network.", "Second line."]},
                       {"terms": ["batch", "批量"], "definition": ["A group."]}]
    assert term_targets("a {term}`Layer` and {term}`layers <layer>` and {term}`batch`") == ["Layer", "layer", "batch"]


def test_every_term_role_in_the_book_is_in_the_glossary():
    known = glossary_terms()
    missing = [f"{where}: {{term}}`{target}`" for where, text in markdown_texts()
               for target in term_targets(text) if normalise_term(target) not in known]
    assert not missing, "terms marked with {term} but missing from book/glossary.md:\n" + "\n".join(missing)


def test_term_roles_are_only_in_markdown():
    """A {term} role renders only in markdown; in a code cell it would be printed (or break the code)."""
    in_code = [f"{path.name} cell {index}" for path in chapter_notebooks()
               for index, cell in enumerate(read_notebook(path)["cells"])
               if cell["cell_type"] == "code" and TERM_ROLE.search(cell_source(cell))]
    assert not in_code, f"{{term}} roles in code cells: {in_code}"


# ------------------------------------------------------------------ misconceptions


def misconception_entries() -> list[tuple[str, str]]:
    """(title, body) for every ### entry (all chapters are written: none is left for later)."""
    text = MISCONCEPTIONS.read_text(encoding="utf-8")
    assert REFERENCES_SECTION in text, f"misconceptions.md lost its section {REFERENCES_SECTION!r}"
    text = text.split(REFERENCES_SECTION)[0]
    parts = re.split(r"^### (.+)$", text, flags=re.MULTILINE)
    return [(parts[index].strip(), re.split(r"^## ", parts[index + 1], flags=re.MULTILINE)[0])
            for index in range(1, len(parts), 2)]


def myst_slug(title: str) -> str:
    """The anchor MyST gives a heading when myst_heading_anchors is on (myst_parser's default_slugify)."""
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", title.lower().replace(" ", "-"))


def notebook_headings(path: Path) -> list[str]:
    return [match.group(2) for cell in read_notebook(path)["cells"] if cell["cell_type"] == "markdown"
            for match in HEADING.finditer(cell_source(cell))]


def test_every_misconception_links_to_the_chapter_that_proves_it():
    entries = misconception_entries()
    assert len(entries) > 20, f"only {len(entries)} entries parsed in misconceptions.md"
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    anchor_depth = config.get("parse", {}).get("myst_heading_anchors", 0)
    problems = []
    for title, body in entries:
        links = CHAPTER_LINK.findall(body)
        if not links:
            problems.append(f"{title!r}: no link '[Chapter N](partX-.../NN-....ipynb)' to the chapter that proves it")
        for text, target, number, anchor in links:
            notebook = MISCONCEPTIONS.parent / target
            if not notebook.is_file():
                problems.append(f"{title!r}: {target} does not exist")
                continue
            said = re.match(r"[Cc]hapter (\d+)", text)
            if said and int(said.group(1)) != int(number):
                problems.append(f"{title!r}: the link says {text!r} but points to {target}")
            headings = notebook_headings(notebook)
            if anchor:
                if not anchor_depth:
                    problems.append(f"{title!r}: anchor #{anchor}, but _config.yml does not set "
                                    "parse.myst_heading_anchors, so the build cannot resolve it")
                elif anchor not in {myst_slug(heading) for heading in headings}:
                    problems.append(f"{title!r}: no heading of {target} has the anchor #{anchor}")
            section = re.search(r"§\s*(.+)$", text)
            if section and section.group(1).strip() not in headings:
                problems.append(f"{title!r}: {target} has no heading {section.group(1).strip()!r}")
    assert not problems, "misconceptions.md:\n" + "\n".join(problems)


def test_slug_matches_myst():
    from myst_parser.mdit_to_docutils.base import default_slugify
    for title in ("Common mistakes: the MLM loss", "Fusion (early, late) — 2 ways", "CLIP 的损失"):
        assert myst_slug(title) == default_slugify(title)


# ------------------------------------------------------------------ bibliography


def test_every_bibliography_entry_has_author_year_and_venue_or_url():
    from pybtex.database import parse_file  # installed with sphinxcontrib-bibtex

    problems = []
    for key, entry in parse_file(str(BIB), bib_format="bibtex").entries.items():
        fields = {name.lower(): value.strip() for name, value in entry.fields.items()}
        has_author = bool(entry.persons.get("author"))
        if not has_author and entry.type == "misc" and fields.get("url"):
            has_author = bool(entry.persons.get("editor") or fields.get("organization"))
        if not has_author:
            problems.append(f"{key}: no author" + (" (nor editor or organization)" if entry.type == "misc" else ""))
        if not re.fullmatch(r"\d{4}", fields.get("year", "")):
            problems.append(f"{key}: year {fields.get('year')!r} is not a four-digit year")
        if not any(fields.get(name) for name in VENUE_FIELDS):
            problems.append(f"{key}: no venue ({', '.join(VENUE_FIELDS[:-1])}) and no url")
        if fields.get("url") and not re.match(r"https?://\S+$", fields["url"]):
            problems.append(f"{key}: url {fields['url']!r} is not an http(s) address")
    assert not problems, "book/references.bib:\n" + "\n".join(problems)
