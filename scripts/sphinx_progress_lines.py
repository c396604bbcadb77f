"""Sphinx extension (loaded through ``_config.yml`` → ``sphinx.local_extensions``): one line per progress bar.

A progress bar (tqdm) in a notebook redraws itself by writing a carriage return and the new bar over the old
one, and the kernel sends each redraw as a stream output of its own.  A terminal or Jupyter shows only the
last drawing.  myst-nb's ``nb_merge_streams`` joins a cell's stream outputs *with a newline between them*
before it drops what precedes each ``\\r``, so every redraw became a line of its own on the website (140
lines for one training run).  This extension first concatenates consecutive chunks of one stream as the
terminal would receive them, then lets myst-nb collapse the carriage returns; and it keeps, in every literal
block, only what a terminal would show of each line (the text after its last carriage return).
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


def concatenate_stream_chunks(outputs: list) -> list:
    """Consecutive stream outputs of one name joined as the terminal receives them (no newline added)."""
    joined: list = []
    for output in outputs:
        if (output.get("output_type") == "stream" and joined and joined[-1].get("output_type") == "stream"
                and joined[-1].get("name") == output.get("name")):
            joined[-1] = type(output)({**joined[-1], "text": joined[-1]["text"] + output["text"]})
        else:
            joined.append(output)
    return joined


def _patch_myst_nb_stream_merging() -> None:
    from myst_nb.core import render
    original = getattr(render.coalesce_streams, "__wrapped__", render.coalesce_streams)

    def coalesce_streams(outputs):
        return original(concatenate_stream_chunks(list(outputs)))

    coalesce_streams.__wrapped__ = original
    render.coalesce_streams = coalesce_streams


def setup(app: Any) -> dict[str, Any]:
    _patch_myst_nb_stream_merging()
    app.connect("doctree-read", collapse_progress_output)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
