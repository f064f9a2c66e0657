"""The Jupyter Book: table of contents, notebook parameters, and a full build.

Fast tests check the book's sources; the slow test builds the whole book with
``scripts/build_book.py`` on ``params/smoke.yaml`` and checks every page with
``scripts/screenshot_book.py`` (headless Chromium).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(module: str):
    """Import a module the book needs; skip without it locally, fail in CI."""
    try:
        return __import__(module)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{module} is not installed (CI must install the [book] extra)")
        pytest.skip(f"{module} is not installed (pip install -e .[book])")


def toc_files() -> list[str]:
    """_toc.yml's pages in reading order, read by the screenshot script's own parser."""
    import importlib.util

    need("yaml")
    spec = importlib.util.spec_from_file_location("screenshot_book", ROOT / "scripts" / "screenshot_book.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert need("yaml").safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")).get("format") == "jb-book"
    return script.toc_pages(ROOT / "_toc.yml")


def source_of(entry: str) -> Path | None:
    """The file behind a toc entry; executed notebooks map to their notebooks/ source."""
    stem = entry.rsplit(".", 1)[0] if entry.endswith((".md", ".ipynb", ".rst")) else entry
    if stem.startswith("book/notebooks/"):
        src = ROOT / "notebooks" / (Path(stem).name + ".ipynb")
        return src if src.is_file() else None
    for suffix in (".md", ".ipynb", ".rst"):
        path = ROOT / (stem + suffix)
        if path.is_file():
            return path
    return None


def test_toc_entries_exist():
    files = toc_files()
    assert len(files) == len(set(files)), f"duplicate toc entries: {files}"
    missing = [f for f in files if source_of(f) is None]
    assert not missing, f"_toc.yml lists pages with no source file: {missing}"


def test_every_notebook_is_in_the_toc():
    listed = {Path(f).name for f in toc_files() if f.startswith("book/notebooks/")}
    sources = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert sources, "no notebooks in notebooks/"
    assert sources == listed, (
        f"notebooks/ and _toc.yml disagree: not in toc {sorted(sources - listed)}, "
        f"no source {sorted(listed - sources)}"
    )


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    tagged = [
        i for i, cell in enumerate(nb["cells"])
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters' (need exactly 1)"
    cell = nb["cells"][tagged[0]]
    assert cell["cell_type"] == "code", f"{path.name}: the parameters cell must be a code cell"
    assert nb.get("metadata", {}).get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: kernel must be python3 (scripts/build_book.py runs it with that kernel)"
    )


@pytest.mark.parametrize("name", ["smoke", "jetson"])
def test_params_files(name: str):
    yaml = need("yaml")
    params = yaml.safe_load((ROOT / "params" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(params, dict)
    assert {"model", "data"} <= set(params), f"params/{name}.yaml needs model and data"


def chromium_or_skip() -> None:
    if any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        return
    msg = "Chromium is not installed (apt-get install -y chromium); needed to check the rendered pages"
    if IN_CI:
        pytest.fail(msg + " -- CI installs it, so its absence is an error")
    pytest.skip(msg)


@pytest.mark.slow
def test_book_builds_and_renders():
    chromium_or_skip()
    need("papermill")
    need("jupyter_book")
    build = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_book.py"), "--params", "params/smoke.yaml"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600,
    )
    print(build.stdout)
    assert build.returncode == 0, f"book build failed:\n{build.stdout[-6000:]}"
    assert (ROOT / "_build" / "html" / "index.html").is_file()

    shots = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot_book.py"),
         "--html", "_build/html", "--out", "_build/screenshots"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800,
    )
    print(shots.stdout)
    assert shots.returncode == 0, f"rendered book has problems:\n{shots.stdout[-6000:]}"
