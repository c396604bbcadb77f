"""Sphinx extension (loaded through ``_config.yml`` → ``sphinx.local_extensions``).

Jupyter Book 1 adds *every* ``.js`` and ``.css`` file under ``_static/`` to every page as a
``<script>``/``<link>`` tag. That is right for ``_static/custom.css`` but wrong for the libraries that
``scripts/vendor_assets.sh`` vendors into ``_static/vendor/``: MathJax alone has dozens of component
files that it loads itself, on demand, and the page must load only its entry point (``mathjax_path``)
and Mermaid's (``mermaid_use_local``). This extension removes the ``vendor/`` entries again, right after
the configuration is read and before any page is written.
"""
from __future__ import annotations

from typing import Any

VENDOR_PREFIX = "vendor/"


def _filename(entry: Any) -> str:
    """``html_js_files`` entries are a filename or a ``(filename, attributes)`` pair."""
    return entry[0] if isinstance(entry, (tuple, list)) else str(entry)


def drop_vendored_files(app: Any, config: Any) -> None:
    for option in ("html_js_files", "html_css_files"):
        entries = list(getattr(config, option, []) or [])
        kept = [entry for entry in entries if not _filename(entry).startswith(VENDOR_PREFIX)]
        setattr(config, option, kept)


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", drop_vendored_files)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
