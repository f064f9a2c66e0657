"""A notebook as a JupyterLab user meets it, in a real browser.

JupyterLab from the project's environment on loopback, headless Chromium driven by
Playwright: open a copy of 02_visit outside the checkout with ``random_weights = True``
set in its parameters cell (what a user without weights does), Run All Cells, and fail on
any error or stderr output in a cell; then move the live ``sim`` slider and check that
the picture is redrawn at its own size.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
# The flags this closed machine needs (no background connections, no sandbox as root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_copy(src: Path, dst: Path, **params: object) -> Path:
    """``src`` copied to ``dst`` with ``params`` edited into its parameters cell, as a user
    edits it: in the line ``name: type = default  # help`` only the default changes."""
    nb = json.loads(src.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    text = "".join(cell["source"])
    for name, value in params.items():
        text, n = re.subn(rf"^({name}\s*:[^=]*=\s*)[^#\n]*?(\s*#.*)?$",
                          lambda m: f"{m.group(1)}{value!r}{m.group(2) or ''}", text, flags=re.M)
        assert n == 1, f"{src.name} declares no parameter {name!r}"
    cell["source"] = text.splitlines(True)
    dst.write_text(json.dumps(nb, indent=1))
    return dst


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on loopback serving a folder outside the checkout."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); needed for the JupyterLab test")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("jupyterlab")
    root = tmp_path_factory.mktemp("lab")
    port, token = _free_port(), "tomato-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".config"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         "--allow-root", "--LabApp.news_url="],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield root, url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def run_all(page, url: str, token: str, name: str, timeout_s: float = 600) -> float:
    """Open notebook ``name``, Run All Cells, wait for every code cell; returns seconds."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"{url}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    # The kernel is ready once the status bar says so (the indicator turns idle earlier).
    page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=120_000)
    start = time.monotonic()
    for _ in range(3):  # a click that lands while the kernel still connects runs nothing
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function("""() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                                        .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""", timeout=20_000)
            break
        except PlaywrightTimeout:
            continue
    # Done when every code cell has run, or when a cell failed and the kernel went idle
    # (Run All stops at the first error).
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            const done = prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
            const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
            const failed = document.querySelector(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']");
            return done || (failed !== null && idle !== null && !prompts.some(p => p.textContent.includes('*')));
        }""", timeout=timeout_s * 1000, polling=500)
    return time.monotonic() - start


def cell_errors(page) -> list[str]:
    """Text of every error or stderr output in the open notebook."""
    outputs = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    return [outputs.nth(i).text_content()[:300] for i in range(outputs.count())]


def test_visit_runs_all_cells_and_its_slider_redraws(lab):
    from playwright.sync_api import sync_playwright

    root, url, token = lab
    # A copy outside the checkout: the package finds the checkout it was installed from.
    user_copy(ROOT / "notebooks" / "02_visit.ipynb", root / "02_visit.ipynb", random_weights=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            seconds = run_all(page, url, token, "02_visit.ipynb")
            print(f"02_visit: Run All Cells took {seconds:.1f} s in JupyterLab")
            assert cell_errors(page) == []

            view = page.locator(".widget-vbox", has=page.locator(".widget-image")).first
            view.scroll_into_view_if_needed()
            picture = view.locator("img.widget-image")
            before = picture.get_attribute("src")
            natural = picture.evaluate("img => [img.naturalWidth, img.getBoundingClientRect().width]")
            assert abs(natural[0] - natural[1]) <= 1, f"the picture is stretched: {natural}"
            handle = view.locator(".noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            page.wait_for_function("([img, old]) => img.src !== old", arg=[picture.element_handle(), before],
                                   timeout=30_000)
            assert cell_errors(page) == []
        finally:
            browser.close()
