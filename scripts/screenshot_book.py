#!/usr/bin/env python
"""Check the built book page by page and take a screenshot of each page.

Usage::

    python scripts/screenshot_book.py [--html _build/html] [--out _build/screenshots]

For every page listed in ``_toc.yml`` it checks that

* the page's HTML exists under ``--html``;
* every ``<img>`` in the page resolves: a relative ``src`` must name an existing,
  non-empty file, a ``data:`` URI must carry data (remote images are reported,
  since the book must read offline);
* every notebook page (``book/notebooks/*``) shows at least one figure — an image
  from the page's content, not a theme asset — except the summary page
  ``07_reproduction``, which may be a table only;
* a headless Chromium screenshot of the page (``--out/<page>.png``) is not blank:
  larger than a few KB and not (almost) a single colour.

It prints one line per page and exits non-zero if anything failed (1), or if no
Chromium is found (3).  Chromium is Debian's ``chromium`` package
(``apt-get install -y chromium``), run headless with a throw-away profile and no
network-dependent features; pass ``--chromium PATH`` to use another binary.
Needs Pillow and PyYAML (both in the book environment).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
# notebook pages allowed to have no figure (the reproduction summary is a table)
NO_FIGURE_OK = {"07_reproduction"}
MIN_PNG_BYTES = 4096
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


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


class ImgCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            src = dict(attrs).get("src")
            if src is not None:
                self.srcs.append(src)


def check_images(page_html: Path, html_root: Path) -> tuple[list[str], int]:
    """Return (problems, number of content figures) for one page."""
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
        if parts.scheme in ("http", "https") or src.startswith("//"):
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
    return problems, figures


def find_chromium(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(chromium: str, url: str, png: Path, profile: Path, width: int, height: int,
               budget_ms: int, timeout: float) -> str | None:
    """Take one screenshot; return an error string or None."""
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    cmd = [
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
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={png}",
        url,
    ]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"chromium timed out after {timeout:.0f}s"
    if not png.exists():
        tail = "\n".join(proc.stdout.strip().splitlines()[-5:])
        return f"no screenshot written (chromium exit {proc.returncode}): {tail}"
    return None


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="_build/html", help="built HTML folder (default: %(default)s)")
    ap.add_argument("--out", default="_build/screenshots", help="where PNGs go (default: %(default)s)")
    ap.add_argument("--toc", default="_toc.yml", help="table of contents (default: %(default)s)")
    ap.add_argument("--chromium", default=None, help="Chromium binary (default: first of %s on PATH)" % ", ".join(CHROMIUM_NAMES))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--budget-ms", type=int, default=5000,
                    help="virtual time for JS (MathJax, theme) to settle (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per screenshot (default: %(default)s)")
    ap.add_argument("--no-screenshots", action="store_true", help="only check pages and images")
    args = ap.parse_args(argv)

    html_root = Path(args.html)
    html_root = html_root if html_root.is_absolute() else ROOT / html_root
    out = Path(args.out)
    out = out if out.is_absolute() else ROOT / out
    toc = Path(args.toc)
    toc = toc if toc.is_absolute() else ROOT / toc

    chromium = None
    if not args.no_screenshots:
        chromium = find_chromium(args.chromium)
        if chromium is None:
            print("screenshot_book: no Chromium found; install it with: "
                  "apt-get install -y chromium  (or pass --chromium PATH / --no-screenshots)")
            return 3

    pages = toc_pages(toc)
    failures: list[str] = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tomato-chromium-") as profile:
        for page in pages:
            html = html_root / f"{page}.html"
            name = Path(page).name
            notes: list[str] = []
            if not html.is_file():
                failures.append(f"{page}: missing page {html}")
                print(f"FAIL  {page}: no HTML at {html}")
                continue
            problems, figures = check_images(html, html_root)
            notes += problems
            is_notebook = page.startswith("book/notebooks/")
            if is_notebook and name not in NO_FIGURE_OK and figures == 0:
                notes.append("notebook page has no figure")
            shot = ""
            if chromium is not None:
                png = out / f"{page.replace('/', '__')}.png"
                t0 = time.perf_counter()
                err = screenshot(chromium, html.resolve().as_uri(), png, Path(profile),
                                 args.width, args.height, args.budget_ms, args.timeout)
                if err is None:
                    err = blank_reason(png)
                if err is not None:
                    notes.append(err)
                else:
                    shot = f", screenshot {png.stat().st_size // 1024} KB in {time.perf_counter() - t0:.1f}s"
                    try:
                        shot += f" -> {png.relative_to(ROOT)}"
                    except ValueError:
                        shot += f" -> {png}"
            status = "FAIL" if notes else "ok  "
            print(f"{status}  {page}: {figures} figure(s){shot}" + ("" if not notes else " -- " + "; ".join(notes)))
            failures += [f"{page}: {n}" for n in notes]

    print(f"checked {len(pages)} page(s) in {time.perf_counter() - t_all:.1f}s: "
          f"{'all good' if not failures else f'{len(failures)} problem(s)'}")
    for f in failures:
        print("  - " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
