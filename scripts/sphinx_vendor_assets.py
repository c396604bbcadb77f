"""Sphinx extension (loaded through ``_config.yml`` → ``sphinx.local_extensions``).

Jupyter Book 1 adds *every* ``.js`` and ``.css`` file under ``_static/`` to every page as a
``<script>``/``<link>`` tag. That is right for ``_static/custom.css`` but wrong for the libraries that
``scripts/vendor_assets.sh`` vendors into ``_static/vendor/``: MathJax alone has dozens of component
files that it loads itself, on demand, and the page must load only its entry point (``mathjax_path``)
and Mermaid's (``mermaid_use_local``). This extension removes the ``vendor/`` entries again, right after
the configuration is read and before any page is written. It removes ``widgets-offline.js`` too, and adds
it back only to the pages that render saved ipywidgets, *before* RequireJS and the widget manager
(myst-nb's ``nb_ipywidgets_js``), because the widget manager reads the settings that file makes when it
starts (see the file).

It also writes each script tag once per page. sphinx-thebe and sphinx-togglebutton add their inline
configuration scripts (``const THEBE_JS_URL = ...``) from an ``env-before-read-docs`` handler, and with
Jupyter Book 1 on Sphinx 7.4 those end up in the page twice; the second ``const`` declaration is a
JavaScript error ("Identifier 'THEBE_JS_URL' has already been declared") on every page, which
``tests/test_site_browser.py`` reports. Identical tags are dropped at ``html-page-context``, after every
extension has added its per-page files.
"""
from __future__ import annotations

from typing import Any

VENDOR_PREFIX = "vendor/"
WIDGET_MANAGER = "vendor/jupyter-widgets/embed-amd.js"
WIDGET_SETTINGS = "widgets-offline.js"
# Sphinx sorts a page's scripts by priority; myst-nb adds the widget scripts at the default, 500.
WIDGET_SETTINGS_PRIORITY = 450


def _filename(entry: Any) -> str:
    """``html_js_files`` entries are a filename or a ``(filename, attributes)`` pair."""
    return entry[0] if isinstance(entry, (tuple, list)) else str(entry)


def drop_vendored_files(app: Any, config: Any) -> None:
    for option in ("html_js_files", "html_css_files"):
        entries = list(getattr(config, option, []) or [])
        kept = [entry for entry in entries
                if not _filename(entry).startswith(VENDOR_PREFIX) and _filename(entry) != WIDGET_SETTINGS]
        setattr(config, option, kept)


def _script_key(script: Any) -> tuple:
    """What a ``<script>`` tag says: its file and its attributes (an inline script's body is one of them).

    An inline script's filename is ``None`` in one copy and ``""`` in the other (Sphinx's registry and
    its builder spell "no file" differently), so both count as no file.
    """
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((key, str(value)) for key, value in attributes.items())))


def add_widget_settings(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if isinstance(scripts, list) and any(_script_key(script)[0].endswith(WIDGET_MANAGER) for script in scripts):
        app.add_js_file(WIDGET_SETTINGS, priority=WIDGET_SETTINGS_PRIORITY)


def drop_duplicate_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # Replace the contents, not the list: Sphinx sorts this list (by priority) after the event.
    scripts[:] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", drop_vendored_files)
    # After myst-nb (priority 500) has added a page's widget scripts.
    app.connect("html-page-context", add_widget_settings, priority=900)
    app.connect("html-page-context", drop_duplicate_scripts, priority=901)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
