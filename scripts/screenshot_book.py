#!/usr/bin/env python
"""Check the built book page by page, as a reader with no network sees it.

Usage::

    python scripts/screenshot_book.py [--html _build/html] [--out _build/screenshots]
                                      [--skip CHECK ...] [--only CHECK ...]

Every page listed in ``_toc.yml`` must have its HTML under ``--html``; then these
checks run, each named so it can be switched off (``--skip``) or run alone (``--only``):

``images``
    every ``<img>`` resolves: a relative ``src`` names an existing, non-empty file, a
    ``data:`` URI carries data; remote images fail (the book must read offline).
``figures``
    every notebook page (``book/notebooks/*``) shows a figure (an image from the page's
    content, not a theme asset), except those named in ``NO_FIGURE_OK`` (none at present).
``screenshot``
    a headless Chromium screenshot (``--out/<page>.png``) is not blank.
``math``
    in the page as Chromium renders it with networking blocked: no raw ``\\(``, ``\\[``
    or ``$$`` in the visible text (code excluded), every math element holds MathJax
    output (``mjx-container``), no MathJax error, and a page whose source has math
    shows rendered math.
``stderr``
    no stderr or log text in the rendered page: no output with class ``stderr`` or
    ``traceback``, and no ``WARNING``/``ERROR`` log line, Python warning or traceback in
    a cell's text output.
``params``
    every notebook page shows the parameters in force: an HTML ``<table>`` whose
    ``<caption>`` or first header cell contains "Parameters in force".
``verdict``
    the first page (the toc's root) has a verdict: a heading, an admonition title or a
    caption containing "Verdict", or an element whose id or class contains "verdict".
``tables``
    every table as Chromium lays it out at ``--width``: wider than its column only inside
    a container that scrolls, no cell whose text runs out of it (headers that collide),
    no number broken across lines (``scripts/table_layout.js``, injected into a copy of
    the page next to it, measures them).
``placeholders``
    no unfilled format field in the visible text or its inline code, outside code blocks
    and math (``{device}``, ``{weights.source}``, ``{x:.2f}``): a sentence whose f-prefix
    was forgotten.
``diversity``
    a notebook page that reports top-1 agreement with the baseline also says how varied
    the baseline's predictions are ("Baseline predictions: ..."): agreement with a
    degenerate classifier is cheap. (No page reports agreement at present.)

Chromium (Debian's ``chromium``; ``--chromium PATH`` for another) runs headless with a
throw-away profile, every host name resolving to nothing and a proxy to a closed port,
so a CDN cannot make up for what the book does not ship. It prints one line per page
and exits 1 if any check failed, 3 if a check needs Chromium and none is found.
Needs Pillow and PyYAML (both in the book environment).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("images", "offline", "figures", "screenshot", "math", "stderr", "params", "verdict", "diversity",
          "placeholders", "tables")
BROWSER_CHECKS = {"screenshot", "math", "stderr", "params", "verdict", "diversity", "placeholders", "tables"}
LAYOUT_JS = Path(__file__).with_name("table_layout.js")
LAYOUT_ID = "tomato-layout"
# notebook pages allowed to have no figure (none at present)
NO_FIGURE_OK: set[str] = set()
PARAMS_MARKER = "parameters in force"
VERDICT_MARKER = "verdict"
# A format field left unfilled in generated prose: "measured on `{device}`".
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.\[\]']*(?:![rsa])?(?::[^{}\s]*)?\}")
AGREEMENT = re.compile(r"top-1 agreement|agreement with the (baseline|unpatched)|same top-1", re.I)
DIVERSITY_MARKER = "baseline predictions"
MIN_PNG_BYTES = 4096
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# No network for the browser: every name resolves to nothing, and anything that still
# tries (an IP literal) goes to a proxy on a closed local port. file:// is unaffected.
OFFLINE_FLAGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)
RAW_MATH = ("\\(", "\\[", "$$")
# Text never read as prose: code, scripts, and MathJax's own output.
OPAQUE_TAGS = {"script", "style", "pre", "code", "textarea", "template", "noscript", "svg", "math"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
             "param", "source", "track", "wbr"}
LOG_LINE = re.compile(
    r"^\s*(WARNING|ERROR|CRITICAL)\b[:\s]"       # logging's default format and the like
    r"|Traceback \(most recent call last\)"
    r"|\b\w+(Warning|Error): "                      # warnings.warn / exception lines
    r"|^\s*warnings\.warn\(",
    re.M,
)


def toc_pages(toc_path: Path) -> list[str]:
    """Document names of _toc.yml in reading order (root, then parts/chapters/sections)."""
    import yaml

    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            for key in ("sections", "chapters", "parts"):
                walk(entry.get(key))

    for key in ("parts", "chapters", "sections"):
        walk(toc.get(key))
    # strip suffixes, keep order, drop duplicates
    seen, out = set(), []
    for p in pages:
        p = str(Path(p).with_suffix("")) if Path(p).suffix in {".md", ".ipynb", ".rst"} else p
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


# --------------------------------------------------------------------------- images
def _remote(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https") or url.startswith("//")


class ImgCollector(HTMLParser):
    """The page's image sources, and the scripts and stylesheets it would fetch from the network."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.remote: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src") is not None:
            self.srcs.append(a["src"])
        elif tag == "script" and _remote(a.get("src") or ""):
            self.remote.append(f"script {a['src']}")
        elif tag == "link" and "stylesheet" in (a.get("rel") or "") and _remote(a.get("href") or ""):
            self.remote.append(f"stylesheet {a['href']}")


def check_images(page_html: Path, html_root: Path) -> tuple[list[str], int, list[str]]:
    """Return (image problems, number of content figures, remote scripts and stylesheets) for one page."""
    parser = ImgCollector()
    parser.feed(page_html.read_text(encoding="utf-8", errors="replace"))
    problems, figures = [], 0
    for src in parser.srcs:
        if src.startswith("data:"):
            if "," not in src or not src.split(",", 1)[1].strip():
                problems.append("empty data: image")
            else:
                figures += 1
            continue
        parts = urlsplit(src)
        if _remote(src):
            problems.append(f"remote image {src} (the book must read offline)")
            continue
        target = (page_html.parent / unquote(parts.path)).resolve()
        if not target.is_file():
            problems.append(f"missing image {src}")
        elif target.stat().st_size == 0:
            problems.append(f"empty image {src}")
        else:
            try:
                rel = target.relative_to(html_root.resolve())
            except ValueError:
                rel = target
            if not str(rel).startswith("_static"):  # theme assets are not figures
                figures += 1
    return problems, figures, parser.remote


# --------------------------------------------------------------------------- rendered DOM
@dataclass
class Dom:
    """What the checks need from one rendered page (Chromium's ``--dump-dom``)."""

    prose: list[str] = field(default_factory=list)          # visible text outside code and math output
    inline_code: list[str] = field(default_factory=list)    # text of <code> outside <pre> (backticks in prose)
    math_elements: int = 0                                   # elements with class "math"
    math_unrendered: list[str] = field(default_factory=list) # their text when no mjx-container inside
    mjx: int = 0                                             # MathJax output elements
    mjx_errors: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)         # text of stderr / traceback outputs
    output_text: list[str] = field(default_factory=list)    # <pre> text inside cell outputs
    tables: list[tuple[str, str]] = field(default_factory=list)  # (caption, first header cell)
    headings: list[str] = field(default_factory=list)
    labelled: list[str] = field(default_factory=list)       # admonition titles, captions
    ids_classes: list[str] = field(default_factory=list)
    layout: list[str] | None = None                          # table problems; None: not measured


class _DomParser(HTMLParser):
    """Walks a serialised DOM (balanced tags) keeping the state the checks need."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.dom = Dom()
        self.stack: list[tuple[str, set[str]]] = []
        self.buffers: list[tuple[str, list[str], int]] = []  # (kind, text parts, stack depth)
        self.math_open: list[tuple[int, int, list[str]]] = []  # (depth, mjx count at open, text)
        self.table_open: list[dict[str, str | None]] = []

    def _inside(self, pred) -> bool:
        return any(pred(tag, cls) for tag, cls in self.stack)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = set((a.get("class") or "").split())
        if a.get("id") == LAYOUT_ID:
            self.dom.layout = json.loads(a.get("data-problems") or "[]")
        for v in (a.get("id") or "", a.get("class") or ""):
            if v:
                self.dom.ids_classes.append(v)
        if tag == "mjx-container":
            self.dom.mjx += 1
        if tag == "mjx-merror" or "mjx-merror" in cls:
            self.dom.mjx_errors.append(a.get("data-mjx-error") or "MathJax error")
        if tag in VOID_TAGS:
            return
        self.stack.append((tag, cls))
        depth = len(self.stack)
        if "math" in cls and tag in ("span", "div", "p"):
            self.dom.math_elements += 1
            self.math_open.append((depth, self.dom.mjx, []))
        if cls & {"stderr", "traceback"}:
            self.buffers.append(("stderr", [], depth))
        if tag == "pre" and self._inside(lambda t, c: "cell_output" in c or "output" in c):
            self.buffers.append(("output", [], depth))
        if re.fullmatch(r"h[1-6]", tag):
            self.buffers.append(("heading", [], depth))
        if tag == "caption" or "admonition-title" in cls or "caption-text" in cls:
            self.buffers.append(("label", [], depth))
        if tag == "table":
            self.table_open.append({"caption": None, "th": None})
        if self.table_open and tag == "caption":
            self.buffers.append(("table-caption", [], depth))
        if self.table_open and tag == "th" and self.table_open[-1]["th"] is None:
            self.buffers.append(("table-th", [], depth))

    def handle_startendtag(self, tag, attrs):
        # <path .../> in SVG and the like: never pushed on the stack
        if tag == "mjx-container":
            self.dom.mjx += 1

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or not self.stack:
            return
        # pop to the matching tag (a serialised DOM is balanced; be lenient anyway)
        while self.stack:
            depth = len(self.stack)
            open_tag, _ = self.stack.pop()
            while self.buffers and self.buffers[-1][2] == depth:
                kind, parts, _ = self.buffers.pop()
                text = " ".join("".join(parts).split())
                if kind == "stderr" and text:
                    self.dom.stderr.append(text)
                elif kind == "output":
                    self.dom.output_text.append("".join(parts))
                elif kind == "heading":
                    self.dom.headings.append(text)
                elif kind == "label":
                    self.dom.labelled.append(text)
                elif kind == "table-caption" and self.table_open:
                    self.table_open[-1]["caption"] = text
                elif kind == "table-th" and self.table_open:
                    self.table_open[-1]["th"] = text
            if self.math_open and self.math_open[-1][0] == depth:
                _, mjx_before, parts = self.math_open.pop()
                if self.dom.mjx == mjx_before:
                    self.dom.math_unrendered.append(" ".join("".join(parts).split())[:80])
            if open_tag == "table" and self.table_open:
                t = self.table_open.pop()
                self.dom.tables.append((t["caption"] or "", t["th"] or ""))
            if open_tag == tag:
                break

    def handle_data(self, data):
        for _, parts, _ in self.buffers:
            parts.append(data)
        for _, _, parts in self.math_open:
            parts.append(data)
        if not self._inside(lambda t, c: t in OPAQUE_TAGS or t.startswith("mjx-")):
            if data.strip():
                self.dom.prose.append(data)
        elif (self._inside(lambda t, c: t == "code")
              and not self._inside(lambda t, c: t in OPAQUE_TAGS - {"code"} or t.startswith("mjx-"))):
            self.dom.inline_code.append(data)


def parse_dom(html: str) -> Dom:
    """Parse a rendered page (Chromium's ``--dump-dom`` output) into a :class:`Dom`."""
    p = _DomParser()
    p.feed(html)
    p.close()
    return p.dom


# --------------------------------------------------------------------------- sources
# code fences, but not ```{math} blocks
FENCE = re.compile(r"^(```|~~~)(?!\s*\{math\}).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
SOURCE_MATH = re.compile(
    r"\$\$|\\\[|\\\(|\\begin\{|\{math\}|(?<![\\$\w])\$(?=\S)[^$\n]+?(?<=\S)\$(?!\w)"
)


def source_text(page: str, root: Path) -> str:
    """The prose a page is made from: a Markdown file, or a notebook's markdown cells and
    its Markdown/LaTeX outputs (code cells are not prose)."""
    md = root / f"{page}.md"
    if md.is_file():
        return md.read_text(encoding="utf-8", errors="replace")
    nb = root / f"{page}.ipynb"
    if not nb.is_file():
        return ""
    cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
    parts = []
    for c in cells:
        if c.get("cell_type") == "markdown":
            parts.append("".join(c.get("source", "")))
        for out in c.get("outputs", []) or []:
            for mime in ("text/markdown", "text/latex"):
                if mime in out.get("data", {}):
                    parts.append("".join(out["data"][mime]))
    return "\n\n".join(parts)


def has_math(text: str) -> bool:
    """Whether Markdown/MyST text holds math (code blocks and code spans ignored)."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    return SOURCE_MATH.search(text) is not None


# --------------------------------------------------------------------------- checks on the DOM
def check_math(dom: Dom, source_has_math: bool) -> list[str]:
    problems = []
    prose = " ".join(dom.prose)
    raw = [d for d in RAW_MATH if d in prose]
    if raw:
        i = min(prose.index(d) for d in raw)
        problems.append(f"raw LaTeX {' '.join(raw)} on the page: {prose[i:i + 60]!r}")
    if dom.math_unrendered:
        problems.append(f"{len(dom.math_unrendered)} of {dom.math_elements} math element(s) not rendered, "
                        f"e.g. {dom.math_unrendered[0]!r}")
    if dom.mjx_errors:
        problems.append(f"MathJax error(s): {dom.mjx_errors[:3]}")
    if source_has_math and dom.mjx == 0:
        problems.append("the source has math but the page shows no rendered math (no mjx-container)")
    return problems


def check_stderr(dom: Dom) -> list[str]:
    problems = [f"stderr/traceback output: {t[:80]!r}" for t in dom.stderr]
    for text in dom.output_text:
        m = LOG_LINE.search(text)
        if m:
            line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
            problems.append(f"log text in an output: {line.strip()[:80]!r}")
    return problems


def check_params(dom: Dom) -> list[str]:
    for caption, th in dom.tables:
        if PARAMS_MARKER in caption.lower() or PARAMS_MARKER in th.lower():
            return []
    return [f"no parameter table (a <table> whose caption or first header cell says "
            f"'{PARAMS_MARKER.capitalize()}'; {len(dom.tables)} table(s) on the page)"]


def check_verdict(dom: Dom) -> list[str]:
    texts = dom.headings + dom.labelled
    if any(VERDICT_MARKER in t.lower() for t in texts):
        return []
    if any(VERDICT_MARKER in v.lower() for v in dom.ids_classes):
        return []
    return ["no verdict on the first page (a heading, admonition title or caption "
            "containing 'Verdict', or an element with 'verdict' in its id or class)"]


def check_diversity(dom: Dom) -> list[str]:
    prose = " ".join(" ".join(dom.prose).split())
    m = AGREEMENT.search(prose)
    if m is None or DIVERSITY_MARKER in prose.lower():
        return []
    return [f"reports agreement ({m.group(0)!r}) without the baseline's prediction diversity "
            f"(no '{DIVERSITY_MARKER.capitalize()}: ...' on the page)"]


def check_placeholders(dom: Dom) -> list[str]:
    # Inline code that shows an f-string (``f"{sim:.3g}"`` in an API docstring) is an example, not a slip.
    code = [t for t in dom.inline_code if not re.match(r"\s*f[\"']", t)]
    found = sorted({m.group(0) for text in dom.prose + code for m in PLACEHOLDER.finditer(text)})
    return [f"unfilled placeholder(s) in the text: {', '.join(found[:5])}"] if found else []


def check_tables(dom: Dom) -> list[str]:
    if dom.layout is None:
        return ["the tables were not measured (scripts/table_layout.js did not run)"]
    return list(dom.layout)


def dom_checks(dom: Dom, page: str, first: bool, source_math: bool, checks: set[str]) -> list[str]:
    """Problems of one rendered page for the enabled ``checks``, each tagged [check]."""
    out: list[str] = []
    notebook = page.startswith("book/notebooks/")
    if "math" in checks:
        out += [f"[math] {p}" for p in check_math(dom, source_math)]
    if "stderr" in checks:
        out += [f"[stderr] {p}" for p in check_stderr(dom)]
    if "params" in checks and notebook:
        out += [f"[params] {p}" for p in check_params(dom)]
    if "verdict" in checks and first:
        out += [f"[verdict] {p}" for p in check_verdict(dom)]
    if "diversity" in checks and notebook:
        out += [f"[diversity] {p}" for p in check_diversity(dom)]
    if "placeholders" in checks:
        out += [f"[placeholders] {p}" for p in check_placeholders(dom)]
    if "tables" in checks:
        out += [f"[tables] {p}" for p in check_tables(dom)]
    return out


# --------------------------------------------------------------------------- Chromium
def find_chromium(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_cmd(chromium: str, profile: Path, budget_ms: int) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--mute-audio",
        *OFFLINE_FLAGS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
    ]


def screenshot(chromium: str, url: str, png: Path, profile: Path, width: int, height: int,
               budget_ms: int, timeout: float) -> str | None:
    """Take one screenshot; return an error string or None."""
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    cmd = chromium_cmd(chromium, profile, budget_ms) + [f"--window-size={width},{height}", f"--screenshot={png}", url]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"chromium timed out after {timeout:.0f}s"
    if not png.exists():
        tail = "\n".join(proc.stdout.strip().splitlines()[-5:])
        return f"no screenshot written (chromium exit {proc.returncode}): {tail}"
    return None


def dump_dom(chromium: str, url: str, profile: Path, budget_ms: int, timeout: float,
             width: int = 1280, height: int = 2000) -> tuple[str | None, str]:
    """The page's DOM after its scripts ran (offline), or (None, error)."""
    cmd = chromium_cmd(chromium, profile, budget_ms) + [f"--window-size={width},{height}", "--dump-dom", url]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"chromium --dump-dom timed out after {timeout:.0f}s"
    if proc.returncode != 0 or "<html" not in proc.stdout[:2000].lower():
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        return None, f"chromium --dump-dom failed (exit {proc.returncode}): {tail}"
    return proc.stdout, ""


@contextlib.contextmanager
def measured(html: Path, tables: bool) -> Iterator[str]:
    """The URL to dump: with ``tables``, a copy of the page beside it (its relative links
    still resolve) with scripts/table_layout.js injected, removed afterwards."""
    if not tables:
        yield html.resolve().as_uri()
        return
    text = html.read_text(encoding="utf-8")
    script = f"<script>{LAYOUT_JS.read_text(encoding='utf-8')}</script>"
    at = text.rfind("</body>")
    # A name of its own (two checkers never share a copy), written and removed in one try.
    fd, name = tempfile.mkstemp(dir=html.parent, prefix=f".{html.stem}.", suffix=".layout.html")
    copy = Path(name)
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text[:at] + script + text[at:] if at >= 0 else text + script)
        yield copy.resolve().as_uri()
    finally:
        copy.unlink(missing_ok=True)


def blank_reason(png: Path) -> str | None:
    """Why a screenshot looks blank, or None if it looks like a page."""
    from PIL import Image

    size = png.stat().st_size
    if size < MIN_PNG_BYTES:
        return f"screenshot only {size} bytes"
    with Image.open(png) as im:
        small = im.convert("RGB").resize((max(1, im.width // 4), max(1, im.height // 4)))
    colours = small.getcolors(maxcolors=1 << 16)
    if colours is not None:
        colours.sort(reverse=True)
        total = small.width * small.height
        if len(colours) < 3:
            return f"screenshot has {len(colours)} colour(s)"
        if colours[0][0] / total > 0.995:
            return "screenshot is >99.5% one colour"
    return None


# --------------------------------------------------------------------------- main
def _checks(only: list[str] | None, skip: list[str] | None) -> set[str]:
    for name in (only or []) + (skip or []):
        if name not in CHECKS:
            raise SystemExit(f"error: unknown check {name!r}; choose from {', '.join(CHECKS)}")
    chosen = set(only) if only else set(CHECKS)
    return chosen - set(skip or [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="_build/html", help="built HTML folder (default: %(default)s)")
    ap.add_argument("--out", default="_build/screenshots", help="where PNGs go (default: %(default)s)")
    ap.add_argument("--toc", default="_toc.yml", help="table of contents (default: %(default)s)")
    ap.add_argument("--src", default=".", help="book root holding the page sources (default: the repository)")
    ap.add_argument("--chromium", default=None, help="Chromium binary (default: first of %s on PATH)" % ", ".join(CHROMIUM_NAMES))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--budget-ms", type=int, default=8000,
                    help="virtual time for JS (MathJax, theme) to settle (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per Chromium call (default: %(default)s)")
    ap.add_argument("--skip", nargs="+", metavar="CHECK", help=f"checks to switch off: {', '.join(CHECKS)}")
    ap.add_argument("--only", nargs="+", metavar="CHECK", help="run only these checks")
    ap.add_argument("--no-screenshots", action="store_true",
                    help="no browser: only the images and figures checks (same as --only images figures)")
    args = ap.parse_args(argv)

    def here(p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else ROOT / path

    html_root, out, toc, src_root = here(args.html), here(args.out), here(args.toc), here(args.src)
    checks = _checks(args.only, args.skip)
    if args.no_screenshots:
        checks -= BROWSER_CHECKS

    chromium = None
    if checks & BROWSER_CHECKS:
        chromium = find_chromium(args.chromium)
        if chromium is None:
            print("screenshot_book: no Chromium found; install it with: apt-get install -y chromium "
                  f"(or pass --chromium PATH, or --skip {' '.join(sorted(checks & BROWSER_CHECKS))})")
            return 3
    print(f"checks: {', '.join(c for c in CHECKS if c in checks)}"
          + (f"  (off: {', '.join(c for c in CHECKS if c not in checks)})" if set(CHECKS) - checks else "")
          + ("  -- Chromium offline" if chromium else ""))

    pages = toc_pages(toc)
    failures: list[str] = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tomato-chromium-") as profile:
        for k, page in enumerate(pages):
            html = html_root / f"{page}.html"
            name = Path(page).name
            notes: list[str] = []
            if not html.is_file():
                failures.append(f"{page}: missing page {html}")
                print(f"FAIL  {page}: no HTML at {html}")
                continue
            problems, figures, remote = check_images(html, html_root)
            if "images" in checks:
                notes += [f"[images] {p}" for p in problems]
            if "offline" in checks:
                notes += [f"[offline] loads the {r} from the network (dead offline)" for r in remote]
            is_notebook = page.startswith("book/notebooks/")
            if "figures" in checks and is_notebook and name not in NO_FIGURE_OK and figures == 0:
                notes.append("[figures] notebook page has no figure")
            url = html.resolve().as_uri()
            shot = ""
            if chromium is not None and "screenshot" in checks:
                png = out / f"{page.replace('/', '__')}.png"
                t0 = time.perf_counter()
                err = screenshot(chromium, url, png, Path(profile), args.width, args.height,
                                 args.budget_ms, args.timeout)
                if err is None:
                    err = blank_reason(png)
                if err is not None:
                    notes.append(f"[screenshot] {err}")
                else:
                    shot = f", screenshot {png.stat().st_size // 1024} KB in {time.perf_counter() - t0:.1f}s"
            if chromium is not None and checks & (BROWSER_CHECKS - {"screenshot"}):
                with measured(html, "tables" in checks) as dom_url:
                    dom_html, err = dump_dom(chromium, dom_url, Path(profile), args.budget_ms, args.timeout,
                                             args.width, args.height)
                if dom_html is None:
                    notes.append(f"[browser] {err}")
                else:
                    dom = parse_dom(dom_html)
                    source_math = has_math(source_text(page, src_root))
                    notes += dom_checks(dom, page, k == 0, source_math, checks)
                    shot += f", math {dom.mjx} rendered/{dom.math_elements} element(s)"
            status = "FAIL" if notes else "ok  "
            print(f"{status}  {page}: {figures} figure(s){shot}" + ("" if not notes else " -- " + "; ".join(notes)),
                  flush=True)
            failures += [f"{page}: {n}" for n in notes]

    by_check: dict[str, int] = {}
    for f in failures:
        m = re.search(r"\[(\w+)\]", f)
        by_check[m.group(1) if m else "page"] = by_check.get(m.group(1) if m else "page", 0) + 1
    print(f"checked {len(pages)} page(s) in {time.perf_counter() - t_all:.1f}s: "
          + ("all good" if not failures else
             f"{len(failures)} problem(s) (" + ", ".join(f"{c}: {n}" for c, n in sorted(by_check.items())) + ")"))
    for f in failures:
        print("  - " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
