"""The built website, opened page by page in a real browser (Debian's headless Chromium).

``make test`` runs this file after the no-execute build (``scripts/build_book.py --no-execute``); point it
at the executed website with ``make test-site SITE=_build/html``. It needs the site's folder in
``MMTUTORIAL_SITE`` and is skipped without it (the unit-test run comes before the build).

The site is served from 127.0.0.1 on a free port. Chromium resolves no host name but 127.0.0.1
(``--host-resolver-rules``), so a page that reaches for the internet gets no answer, and the test lists
every request the page made (Chrome's DevTools performance log). For every page it asserts:

- no JavaScript console error, and every request answered without an error status;
- no request to any host but 127.0.0.1 (MathJax, Mermaid, the widget libraries, fonts and icons are
  vendored into ``_static/vendor/``);
- every math element typeset by MathJax, no MathJax error box, no raw ``$$`` or ``$\\command$`` left in the text;
- every Mermaid block drawn as an SVG, and every saved ipywidget drawn by the widget manager;
- every image loaded;
- reading comfort at 1280 px (laptop) and 390 px (phone): nothing wider than the window, code blocks that
  never scroll sideways (the book wraps long code lines: ``_static/custom.css``), tables, figures and
  diagrams within the text column, and on the phone a collapsed sidebar behind a visible menu button;
- on an executed site, that every chapter page ends with the footer of the run that produced it.

Screenshots of every page at both widths go to ``_build/screenshots/{laptop,phone}/``.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mmtutorial.config import RUN_FOOTER_PATTERN

ROOT = Path(__file__).resolve().parent.parent
SITE_ENV = "MMTUTORIAL_SITE"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("MMTUTORIAL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MMTUTORIAL_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = ("install Debian's browser and driver with `make system-packages` "
                "(apt-get install -y chromium chromium-driver) and `make setup` for selenium")
LAPTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
# Chapters print this line in their last cell (mmtutorial.config.run_footer, added by scripts/add_run_footer.py).
RUN_FOOTER = RUN_FOOTER_PATTERN
CHAPTER_PAGE = re.compile(r"(^|/)\d{2}-[^/]*\.html$")     # book/part1-foundations/01-neurons-forward-pass.html
LOAD_TIMEOUT_S = 30


def _site_dir() -> Path | None:
    value = os.environ.get(SITE_ENV, "").strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


def _pages(site: Path | None) -> list[str]:
    if site is None or not site.is_dir():
        return []
    return sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html")
                  if not path.relative_to(site).parts[0].startswith("_"))


SITE = _site_dir()
PAGES = _pages(SITE)
pytestmark = pytest.mark.skipif(SITE is None, reason=f"set {SITE_ENV} to a built site, e.g. "
                                f"{SITE_ENV}=_build/check/_build/html (make test does)")


# --------------------------------------------------------------------------------------------------
# A static server and one browser for the whole module.


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def site_url():
    if not SITE.is_dir() or not (SITE / "index.html").is_file():
        pytest.fail(f"{SITE_ENV}={SITE} holds no built site (no index.html); build it with "
                    "`python scripts/build_book.py --no-execute` (or `make book` for _build/html)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)   # port 0: any free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (Python)")
    if missing:
        message = f"the browser test needs {', '.join(missing)}: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,900",
            # Every host name but 127.0.0.1 fails to resolve: the site must not need the internet, and the
            # test must not send anything there. The requests are still seen (and reported) below.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--lang=en-GB"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # selenium's own driver manager would look for a browser download; Debian's driver is given here.
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(LOAD_TIMEOUT_S)
    driver.set_script_timeout(LOAD_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


# --------------------------------------------------------------------------------------------------
# Opening a page and waiting until everything on it has rendered.


def _drain_logs(driver) -> None:
    driver.get_log("browser")
    driver.get_log("performance")


def _wait_for(driver, script: str, what: str, page: str, timeout_s: float = LOAD_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            pytest.fail(f"{page}: {what} did not finish within {timeout_s:.0f} s")
        time.sleep(0.1)


# Saved widget views (a <script> in a cell's output) that the widget manager has not drawn next to them.
_UNDRAWN_WIDGETS = ("[...document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]')]"
                    ".filter(view => !view.parentElement.querySelector('.jupyter-widgets'))")


_REDIRECT = re.compile(r"""<meta\s+http-equiv=["']refresh["']\s+content=["']\d+;\s*url=([^"']+)["']""", re.IGNORECASE)


def _redirect_target(page: str) -> str | None:
    """Where a redirect page (the site's index.html, written by Jupyter Book) sends the browser."""
    path = SITE / page.split("?")[0]
    match = _REDIRECT.search(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else None
    return match.group(1) if match else None


def _open(driver, base_url: str, page: str, metrics: dict) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    _drain_logs(driver)
    driver.get(f"{base_url}/{page}")
    target = _redirect_target(page)
    if target:   # checks run on the page it leads to, once the browser has arrived there
        _wait_for(driver, f"return location.pathname.endsWith({json.dumps(target)})", f"redirecting to {target}",
                  page)
    _wait_for(driver, "return document.readyState === 'complete'", "loading", page)
    # MathJax typesets after loading; its startup promise resolves once every formula is done.
    _wait_for(driver, "return !document.querySelector('.math') || "
                      "!!(window.MathJax && MathJax.startup && MathJax.startup.promise)", "MathJax start", page)
    typeset = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            MathJax.startup.promise.then(() => done(true), (error) => done(String(error)));
        } else { done(true); }""")
    if typeset is not True:
        pytest.fail(f"{page}: MathJax failed: {typeset}")
    _wait_for(driver, "return [...document.querySelectorAll('.mermaid')].every(b => b.querySelector('svg'))",
              "drawing the Mermaid diagrams", page)
    _wait_for(driver, f"return {_UNDRAWN_WIDGETS}.length === 0", "drawing the saved widgets", page)
    # Lazy images load only when scrolled to: bring each into view, then wait for all of them.
    driver.execute_script("document.querySelectorAll('img').forEach(i => { if (!i.complete) i.scrollIntoView(); });"
                          "window.scrollTo(0, 0);")
    _wait_for(driver, "return [...document.querySelectorAll('img')].every(i => i.complete)", "loading the images",
              page)


def _network(driver) -> tuple[list[str], list[str]]:
    """Every URL the page asked for, and the requests that failed or were answered with an error."""
    requested, failed = [], []
    urls_by_id: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls_by_id[params["requestId"]] = url
            requested.append(url)
        elif message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['url']} (HTTP {params['response']['status']})")
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            failed.append(f"{urls_by_id.get(params['requestId'], params['requestId'])} "
                          f"({params.get('errorText', 'failed')})")
    return requested, failed


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "about"}:
        return True
    return parts.scheme in {"http", "https"} and parts.hostname == "127.0.0.1"


def _screenshot(driver, page: str, device: str) -> None:
    folder = SCREENSHOTS / device
    folder.mkdir(parents=True, exist_ok=True)
    # Scrolled to the first code cell when there is one: that is where overflowing lines would show.
    driver.execute_script("const c = document.querySelector('.cell, div.highlight');"
                          "if (c) { c.scrollIntoView(); window.scrollBy(0, -120); }")
    driver.save_screenshot(str(folder / (page.replace("/", "__").removesuffix(".html") + ".png")))
    driver.execute_script("window.scrollTo(0, 0)")


# --------------------------------------------------------------------------------------------------
# What a page shows, measured in the browser.

_CONTENT_REPORT = f"const UNDRAWN = {_UNDRAWN_WIDGETS};" + """
const article = document.querySelector('article.bd-article') || document.body;
const mathElements = [...document.querySelectorAll('.math')];
const skip = 'pre, code, script, style, mjx-container, .highlight, .cell_output';
let text = '';
const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
while (walker.nextNode()) text += walker.currentNode.nodeValue + ' ';
return {
    math: mathElements.length,
    untypeset: mathElements.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60)),
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(m => m.textContent.slice(0, 60)),
    text: text,
    mermaid: [...document.querySelectorAll('.mermaid')].map(b => ({
        svg: !!b.querySelector('svg'),
        error: !!b.querySelector('.error-icon') || /Syntax error in text/.test(b.textContent)})),
    undrawnWidgets: UNDRAWN.length,
    images: [...document.querySelectorAll('img')].map(i => ({
        src: i.currentSrc || i.src, loaded: i.complete && i.naturalWidth > 0})),
    executed: document.querySelectorAll('.cell_output').length > 0,
    title: (document.querySelector('h1') || {textContent: ''}).textContent,
    pageText: article.innerText,
};
"""

_LAYOUT_REPORT = """
const article = document.querySelector('article.bd-article');
const column = article ? article.getBoundingClientRect() : null;
// Wider than the column, whether the box itself is wider or its content spills out of it.
const tooWide = (el) => column && Math.max(el.getBoundingClientRect().width, el.scrollWidth || 0) > column.width + 1;
const describe = (el) => (el.textContent || el.getAttribute('src') || el.tagName).trim().slice(0, 70);
const visible = (el) => {
    if (!el) return false;
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    return style.display !== 'none' && style.visibility !== 'hidden' && box.width > 0 && box.height > 0
        && box.right > 0 && box.left < window.innerWidth;
};
return {
    viewport: window.innerWidth,
    pageWidth: document.documentElement.scrollWidth,
    scrollingCode: [...document.querySelectorAll('div.highlight pre, .cell_output pre, .output pre')]
        .filter(p => p.scrollWidth > p.clientWidth + 1).map(describe),
    wideTables: [...document.querySelectorAll('article table')].filter(tooWide).map(describe),
    wideFigures: [...document.querySelectorAll('article img, article svg, article figure')]
        .filter(el => !el.closest('.mermaid svg svg') && tooWide(el)).map(describe),
    sidebarVisible: visible(document.querySelector('#pst-primary-sidebar')),
    menuButtonVisible: [...document.querySelectorAll('button.primary-toggle')].some(visible),
};
"""


def _layout_problems(layout: dict) -> list[str]:
    problems = []
    if layout["pageWidth"] > layout["viewport"] + 1:
        problems.append(f"the page is {layout['pageWidth']} px wide in a {layout['viewport']} px window "
                        "(it scrolls sideways)")
    for label, key in (("code block scrolls sideways", "scrollingCode"),
                       ("table wider than the text column", "wideTables"),
                       ("figure wider than the text column", "wideFigures")):
        problems += [f"{label}: {item!r}" for item in layout[key]]
    return problems


@pytest.mark.parametrize("page", PAGES or ["(no pages)"])
def test_page_renders_offline_on_a_laptop(browser, site_url, page):
    if not PAGES:
        pytest.fail(f"no HTML pages under {SITE}")
    _open(browser, site_url, page, LAPTOP)
    report = browser.execute_script(_CONTENT_REPORT)
    layout = browser.execute_script(_LAYOUT_REPORT)
    console_errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    requested, failed = _network(browser)
    _screenshot(browser, page, "laptop")

    problems = [f"console error: {message}" for message in console_errors]
    problems += [f"request to the internet: {url}" for url in requested if not _is_local(url)]
    problems += [f"request failed: {failure}" for failure in failed]
    problems += [f"math not typeset: {source!r}" for source in report["untypeset"]]
    problems += [f"MathJax error box: {error!r}" for error in report["mathErrors"]]
    raw_math = re.findall(r"\$\$|\$(?=\S)[^$]*?\\[A-Za-z]+[^$]*?\$", report["text"])
    problems += [f"raw TeX left in the text: {snippet[:60]!r}" for snippet in raw_math]
    for number, block in enumerate(report["mermaid"], start=1):
        if not block["svg"] or block["error"]:
            problems.append(f"Mermaid diagram {number} not drawn" + (" (syntax error)" if block["error"] else ""))
    if report["undrawnWidgets"]:
        problems.append(f"{report['undrawnWidgets']} saved widget(s) not drawn")
    problems += [f"image did not load: {image['src']}" for image in report["images"] if not image["loaded"]]
    problems += _layout_problems(layout)
    if CHAPTER_PAGE.search(page) and report["executed"] and not RUN_FOOTER.search(report["pageText"]):
        problems.append("no run footer (mode, device, wall time, versions) on this executed chapter: "
                        "scripts/add_run_footer.py adds the cell that prints it")
    assert not problems, f"{page} at {LAPTOP['width']} px:\n  " + "\n  ".join(problems)
    # The requests seen must include the page itself, or the log was not read at all.
    assert any(url.endswith(page) or url.endswith("/") for url in requested) or page == "index.html", \
        f"{page}: the browser's network log recorded no request for the page itself"


@pytest.mark.parametrize("page", PAGES or ["(no pages)"])
def test_page_reads_well_on_a_phone(browser, site_url, page):
    if not PAGES:
        pytest.fail(f"no HTML pages under {SITE}")
    _open(browser, site_url, page, PHONE)
    layout = browser.execute_script(_LAYOUT_REPORT)
    _screenshot(browser, page, "phone")
    problems = _layout_problems(layout)
    if layout["sidebarVisible"]:
        problems.append("the navigation sidebar is open on the phone (it should collapse behind the menu button)")
    if not layout["menuButtonVisible"]:
        problems.append("no visible menu button to open the navigation")
    assert not problems, f"{page} at {PHONE['width']} px:\n  " + "\n  ".join(problems)


def test_search_finds_a_chapter_by_a_word_of_its_title(browser, site_url):
    chapters = [page for page in PAGES if CHAPTER_PAGE.search(page) and "/01-" in f"/{page}"]
    assert chapters, f"no chapter 1 page among the {len(PAGES)} pages of {SITE}"
    chapter = chapters[0]
    _open(browser, site_url, chapter, LAPTOP)
    title = browser.execute_script("return document.querySelector('h1').textContent")
    # The longest word of the title, e.g. "Neurons" in "1. Neurons, layers and the forward pass".
    term = max(re.findall(r"[A-Za-z]{4,}", title), key=len)
    _open(browser, site_url, f"search.html?q={term}", LAPTOP)
    _wait_for(browser, "return document.querySelectorAll('#search-results ul.search li').length > 0 || "
                       "/did not match any|no results/i.test((document.querySelector('#search-results') || "
                       "{textContent: ''}).textContent)", f"searching for {term!r}", "search.html")
    links = browser.execute_script(
        "return [...document.querySelectorAll('#search-results ul.search li a')].map(a => a.href)")
    console_errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not console_errors, f"search.html: console errors {console_errors}"
    assert any(urlsplit(link).path.endswith(chapter) for link in links), \
        f"searching for {term!r} (from the title {title.strip()!r}) did not list {chapter}: {links[:10]}"


def test_every_page_of_the_table_of_contents_was_built():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [chapter["file"] for part in toc.get("parts", [])
                             for chapter in part.get("chapters", [])]
    missing = [name for name in files if f"{name}.html" not in PAGES]
    assert not missing, f"pages of _toc.yml missing from {SITE}: {missing}"

