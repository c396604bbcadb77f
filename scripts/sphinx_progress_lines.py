"""Sphinx extension (loaded through ``_config.yml`` → ``sphinx.local_extensions``): one line per progress bar.

A progress bar (tqdm) in a notebook redraws itself by writing a carriage return and the new bar over the old
one.  A terminal or Jupyter shows only the last drawing; a web page does not interpret ``\\r`` (HTML turns
it into a line break), so an executed chapter's page showed every redraw as a line of its own (140 lines
for one training run).  This extension keeps, in every literal block of the executed output, only what
a terminal would show: the text after the last carriage return of each line.
"""
from __future__ import annotations

from typing import Any

from docutils import nodes


def collapse_carriage_returns(text: str) -> str:
    """What a terminal shows of ``text``: each line is what follows its last ``\\r`` (a line ending in ``\\r``
    keeps the drawing before it, as tqdm's final bar is followed by a newline or nothing)."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        drawings = [part for part in line.split("\r") if part]
        lines.append(drawings[-1] if drawings else "")
    return "\n".join(lines)


def collapse_progress_output(app: Any, doctree: nodes.document) -> None:
    for block in list(doctree.findall(nodes.literal_block)):
        text = block.astext()
        if "\r" not in text:
            continue
        collapsed = collapse_carriage_returns(text)
        block.children = [nodes.Text(collapsed)]
        block.rawsource = collapsed


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", collapse_progress_output)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
