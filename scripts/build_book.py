#!/usr/bin/env python
"""Execute the companion notebooks with papermill, then build the Jupyter Book.

Usage (from anywhere; paths are resolved against the repository root)::

    python scripts/build_book.py                          # params/smoke.yaml, all notebooks
    python scripts/build_book.py --params params/jetson.yaml
    python scripts/build_book.py --only 01_similarity 02_visit
    python scripts/build_book.py --skip-execute           # rebuild HTML from book/notebooks/

Steps

1. Every ``notebooks/NAME.ipynb`` (sorted by name, or only those given with
   ``--only``) is executed by papermill into ``book/notebooks/NAME.ipynb``, with the
   parameters of the ``--params`` YAML file injected after the cell tagged
   ``parameters``.  **The working directory of every notebook is the repository
   root**, so notebooks use paths relative to it (``data/results/...``,
   ``params/...``).  The repository root is also put on ``PYTHONPATH`` so that
   ``import tomato`` works without an editable install.  In the executed copy the
   notebook's own ``parameters`` cell is tagged ``remove-cell``: each page shows
   papermill's ``injected-parameters`` cell and, from its setup, a table of every
   parameter in force. A notebook receives only the parameters it declares (the
   others in the YAML file are listed as not used by it), since notebooks stop on
   unknown parameter names. Links to the book's chapters, written
   ``(../book/NAME.md)`` so that they work in JupyterLab from ``notebooks/``, are
   rewritten to ``(../NAME.md)`` in the executed copy under ``book/notebooks/``.
2. ``jupyter-book build .`` (Jupyter Book 1.x, run with this very interpreter) turns
   ``_toc.yml`` into ``_build/html``.  Notebook execution is off in ``_config.yml``:
   papermill has already run them.  Math is typeset by MathJax 3 served from the book
   itself (the ``sphinx_mathjax_offline`` extension in ``_config.yml``), so the HTML
   renders formulas with no network.

The kernel is ``python3`` by default.  jupyter_client starts a kernelspec whose
command is plain ``python`` with *this* interpreter (``sys.executable``), so the
notebooks run in the same virtual environment as this script; the script checks
that and says so.

Before anything runs, the recorded evidence is checked (:func:`stale_evidence`): a record
of a model under ``data/weights`` made with other weights than the committed ones, or
not listed in that model's manifest, stops the build with one ``error:`` line each.

Exit status: 0 on success; 1 if evidence is stale, a notebook fails (its name and the
error are printed) or the book build fails; 2 on bad arguments.
Only the standard library, papermill (and its YAML dependency) are needed.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC_DIR = ROOT / "notebooks"
OUT_DIR = ROOT / "book" / "notebooks"
BUILD_DIR = ROOT / "_build"
HTML_DIR = BUILD_DIR / "html"
LOG_FILE = BUILD_DIR / "book_build.log"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def log(msg: str) -> None:
    print(msg, flush=True)


def rel(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_params(path: Path | None) -> dict:
    if path is None:
        return {}
    import yaml  # papermill depends on PyYAML

    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise SystemExit(f"build_book: {path} must hold a mapping of parameters, got {type(params).__name__}")
    return params


def kernel_env() -> dict:
    """Environment for kernels and the Sphinx build: repo root importable, inline plots."""
    env = os.environ.copy()
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    # ipykernel only selects its inline backend when MPLBACKEND is unset; an inherited
    # MPLBACKEND=Agg would silently drop every figure from the book.
    env.pop("MPLBACKEND", None)
    return env


def check_kernel(kernel: str) -> None:
    """Say which interpreter the kernel will run; warn if it is not this one."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:  # pragma: no cover - papermill always brings jupyter_client
        return
    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise SystemExit(
            f"build_book: no Jupyter kernel named {kernel!r}. Install ipykernel in this "
            f"environment ({sys.executable} -m pip install ipykernel) or pick another with --kernel."
        )
    exe = spec.argv[0] if spec.argv else ""
    major, minor = sys.version_info[:2]
    if exe in {"python", f"python{major}", f"python{major}.{minor}"}:
        exe = sys.executable  # jupyter_client substitutes the running interpreter
    same = Path(exe).resolve() == Path(sys.executable).resolve() if os.path.isabs(exe) else False
    where = "this interpreter" if same else "a DIFFERENT interpreter"
    log(f"kernel {kernel!r} ({spec.resource_dir}) runs {exe} -> {where}")
    if not same:
        log(
            f"build_book: WARNING: kernel {kernel!r} does not use {sys.executable}; "
            "notebooks may miss packages. Remove the stray kernelspec or pass --kernel."
        )


def select_notebooks(only: list[str] | None) -> list[Path]:
    all_nbs = sorted(SRC_DIR.glob("*.ipynb"))
    if not all_nbs:
        raise SystemExit(f"build_book: no notebooks in {SRC_DIR}")
    if not only:
        return all_nbs
    by_name = {p.stem: p for p in all_nbs}
    chosen = []
    for name in only:
        stem = Path(name).stem
        if stem not in by_name:
            raise SystemExit(f"build_book: unknown notebook {name!r}; have: {', '.join(sorted(by_name))}")
        chosen.append(by_name[stem])
    return sorted(set(chosen))


# stderr lines of kernels that are noise, not news (ipykernel >= 7 warns about TCP
# transport on every start; papermill's shutdown may interrupt an idle kernel).
KERNEL_NOISE = ("Kernel is running over TCP without encryption", "KeyboardInterrupt caught in kernel")


class KernelStderr:
    """Send fd 2 (where kernels write their own stderr) to a log file and echo what matters.

    Cell output, including tracebacks, reaches papermill through the Jupyter protocol
    and is unaffected; this only catches what kernel processes print themselves.
    """

    def __init__(self, path: Path):
        self.path = path
        self.pos = 0

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.fh = open(self.path, "w", encoding="utf-8")
        os.dup2(self.fh.fileno(), 2)
        return self

    def news(self) -> list[str]:
        sys.stderr.flush()
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            fh.seek(self.pos)
            text = fh.read()
            self.pos = fh.tell()
        return [ln for ln in text.splitlines() if ln.strip() and not any(n in ln for n in KERNEL_NOISE)]

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.fh.close()
        return False


def declared_parameters(path: Path) -> list[str]:
    """Names of the parameters the notebook's ``parameters`` cell declares."""
    import papermill as pm

    return list(pm.inspect_notebook(str(path)))


def book_link(target: str) -> str:
    """A link target of a source notebook as seen from its executed copy: the source
    lives in ``notebooks/``, the copy in ``book/notebooks/``, so ``../book/X`` becomes
    ``../X``; links between notebooks stay as they are."""
    return "../" + target[len("../book/"):] if target.startswith("../book/") else target


MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
# href="03_merge.ipynb" in an HTML output opens the notebook in JupyterLab; the book's page is .html.
HTML_NOTEBOOK_LINK = re.compile(r'href="([\w.-]+)\.ipynb"')
# The same in a Markdown output (display(Markdown(...))): myst-nb renders it as it stands.
MD_NOTEBOOK_LINK = re.compile(r"\]\(([\w./-]+)\.ipynb([#)])")


def book_links(path: Path) -> None:
    """Apply :func:`book_link` to every Markdown link of the notebook's markdown cells, and
    point ``NAME.ipynb`` links of HTML and Markdown outputs at the book's ``NAME.html`` pages
    (Sphinx resolves the links of markdown cells, not those of outputs)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = MD_LINK.sub(lambda m: f"]({book_link(m.group(1))})", cell.source)
            changed |= text != cell.source
            cell.source = text
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for kind, pattern, page in (("text/html", HTML_NOTEBOOK_LINK, r'href="\1.html"'),
                                        ("text/markdown", MD_NOTEBOOK_LINK, r"](\1.html\2")):
                text = out.get("data", {}).get(kind)
                if isinstance(text, str) and pattern.search(text):
                    out["data"][kind] = pattern.sub(page, text)
                    changed = True
    if changed:
        nbformat.write(nb, str(path))


def execute(notebooks: list[Path], params: dict, kernel: str, timeout: int | None) -> None:
    import papermill as pm

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    env = kernel_env()
    # papermill starts the kernel with os.environ; apply our env for the duration.
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    stderr = KernelStderr(BUILD_DIR / "notebook_stderr.log").__enter__()
    try:
        total = len(notebooks)
        for k, src in enumerate(notebooks, 1):
            dst = OUT_DIR / src.name
            t0 = time.perf_counter()
            declared = declared_parameters(src)
            # A `notebooks:` mapping in the YAML overrides parameters for one notebook.
            per_notebook = params.get("notebooks") or {}
            mine = {**{k: v for k, v in params.items() if k != "notebooks"}, **(per_notebook.get(src.stem) or {})}
            unused = [k for k in mine if k not in declared]
            if unused:
                log(f"  {src.name} does not take: {', '.join(unused)}")
            try:
                pm.execute_notebook(
                    str(src),
                    str(dst),
                    parameters={k: v for k, v in mine.items() if k in declared},
                    kernel_name=kernel,
                    cwd=str(ROOT),
                    progress_bar=False,
                    log_output=False,
                    execution_timeout=timeout,
                )
            except Exception as exc:  # papermill raises PapermillExecutionError, timeouts, ...
                dt = time.perf_counter() - t0
                for line in stderr.news():
                    log(f"  | {line}")
                log(f"[{k}/{total}] {src.name}: FAILED after {dt:.1f}s")
                detail = getattr(exc, "evalue", None) or str(exc)
                ename = getattr(exc, "ename", type(exc).__name__)
                cell = getattr(exc, "exec_count", None)
                where = f" in cell [{cell}]" if cell is not None else ""
                log(f"build_book: notebook {rel(src)} failed{where}: {ename}: {detail}")
                log(f"build_book: the partially executed notebook is {rel(dst)}")
                raise SystemExit(1)
            dt = time.perf_counter() - t0
            hide_default_parameters(dst)
            book_links(dst)
            log(f"[{k}/{total}] {src.name}: ok in {dt:.1f}s -> {rel(dst)}")
            for line in stderr.news():
                log(f"  | {line}")
    finally:
        stderr.__exit__(None, None, None)
        os.environ.clear()
        os.environ.update(saved)


def hide_default_parameters(path: Path) -> None:
    """Tag the notebook's own ``parameters`` cell ``remove-cell`` once papermill has
    injected the real values after it: the page then shows only the parameters that
    actually produced it (papermill's ``injected-parameters`` cell)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in nb.cells]
    if not any("injected-parameters" in t for t in tags):
        return
    changed = False
    for cell, t in zip(nb.cells, tags):
        if "parameters" in t and "remove-cell" not in t:
            cell.metadata.setdefault("tags", []).append("remove-cell")
            changed = True
    if changed:
        nbformat.write(nb, str(path))


def check_outputs() -> None:
    """Before a --skip-execute build: every source notebook needs an executed copy."""
    missing = [p.name for p in sorted(SRC_DIR.glob("*.ipynb")) if not (OUT_DIR / p.name).exists()]
    if missing:
        raise SystemExit(
            "build_book: these notebooks have no executed copy in book/notebooks/ "
            f"(run them first, without --skip-execute/--only): {', '.join(missing)}"
        )
    stale = [
        p.name
        for p in sorted(SRC_DIR.glob("*.ipynb"))
        if p.stat().st_mtime > (OUT_DIR / p.name).stat().st_mtime
    ]
    if stale:
        log(f"build_book: note: sources newer than their executed copies: {', '.join(stale)}")


def _links(html: str) -> list[str]:
    """The ``href`` and ``src`` of every tag of a page (escaped text, such as a code cell
    that shows ``<a href=...>``, holds none)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(v for k, v in attrs if k in ("href", "src") and v)

    Links().feed(html)
    return found


def broken_links(html_dir: Path) -> list[str]:
    """``page: target`` for every relative link or image of the built book that points at
    no file (a link the reader would follow to nothing)."""
    broken = []
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" in page.relative_to(html_dir).parts:
            continue
        for target in _links(page.read_text(encoding="utf-8", errors="replace")):
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not path or re.match(r"^[a-z][a-z0-9+.-]*:", path, flags=re.I) or path.startswith("/"):
                continue  # an anchor on the page, a URL with a scheme (data:, https:, mailto:), or absolute
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(html_dir)}: {target}")
    return broken


def orphan_pages(html_dir: Path, book_dir: Path) -> list[Path]:
    """The pages under ``html_dir/book`` whose source (``.md`` or ``.ipynb`` at the same
    place under ``book_dir``) is gone: Sphinx keeps a removed page's HTML, reachable by its
    address though no longer in the table of contents, and the other pages' links to it,
    until the folder is emptied (the build then starts from empty)."""
    found = []
    for page in sorted((html_dir / book_dir.name).rglob("*.html")):
        source = book_dir / page.relative_to(html_dir / book_dir.name)
        if not any(source.with_suffix(s).exists() for s in (".md", ".ipynb")):
            found.append(page)
    return found


def build_book(fresh: bool, strict: bool) -> None:
    BUILD_DIR.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; sys.exit(main())",
        "build",
        str(ROOT),
        "--path-output",
        str(ROOT),
        "--builder",
        "html",
    ]
    extra = []
    gone = orphan_pages(HTML_DIR, ROOT / "book")
    if gone and not fresh:
        # Every page of an incremental build would still link them: start from empty.
        log(f"pages no longer in the book ({', '.join(p.name for p in gone)}): building every page afresh")
        fresh = True
    if fresh:
        # Sphinx rebuilds every page with --all but keeps the HTML of pages no longer in the
        # table of contents: a fresh build starts from an empty HTML folder.
        shutil.rmtree(BUILD_DIR / "html", ignore_errors=True)
        extra.append("--all")
    if strict:
        extra += ["-W", "--keep-going"]
    cmd += extra
    log("building HTML: jupyter-book build . --path-output . --builder html " + " ".join(extra)
        + "  (math: MathJax bundled with the book, renders offline)")
    t0 = time.perf_counter()
    with open(LOG_FILE, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=kernel_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        warnings = []
        for line in proc.stdout:
            line = ANSI.sub("", line)
            fh.write(line)
            if "WARNING" in line or "ERROR" in line:
                warnings.append(line.rstrip())
        rc = proc.wait()
    dt = time.perf_counter() - t0
    for w in warnings:
        log("  " + w)
    if rc != 0 or not (HTML_DIR / "index.html").exists():
        log(f"build_book: jupyter-book build FAILED (exit {rc}) after {dt:.1f}s; full log: {rel(LOG_FILE)}")
        with open(LOG_FILE, encoding="utf-8") as fh:
            tail = fh.readlines()[-40:]
        sys.stdout.write("".join(tail))
        raise SystemExit(1)
    broken = broken_links(HTML_DIR)
    if broken and not fresh:
        # An incremental build keeps pages of earlier builds (a removed module's source page,
        # a sidebar of the old table of contents) that may link what is gone: build afresh.
        log(f"{len(broken)} link(s) point at nothing after an incremental build: building every page afresh")
        return build_book(True, strict)
    if broken:
        log(f"build_book: {len(broken)} link(s) of the built book point at nothing:")
        for b in broken:
            log("  " + b)
        raise SystemExit(1)
    log(
        f"book built in {dt:.1f}s with {len(warnings)} warning(s): "
        f"{rel(HTML_DIR / 'index.html')} (log: {rel(LOG_FILE)})"
    )


def stale_evidence() -> list[str]:
    """One line per record under ``data/results`` whose weights are not the committed model
    it claims to describe, or that its model's manifest does not list
    (:func:`tomato.harness.manifest.stale`)."""
    sys.path.insert(0, str(ROOT))
    from tomato.harness.manifest import stale

    return stale(ROOT / "data" / "results", ROOT / "data" / "weights")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params/smoke.yaml",
                    help="papermill parameters YAML (relative to the repo root; default: %(default)s)")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="execute only these notebooks (e.g. 01_similarity); the others keep their last output")
    ap.add_argument("--skip-execute", action="store_true", help="do not run papermill; build from book/notebooks/")
    ap.add_argument("--skip-build", action="store_true", help="run the notebooks but do not build the HTML")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: %(default)s)")
    ap.add_argument("--timeout", type=int, default=None,
                    help="per-cell timeout in seconds for papermill (default: none)")
    ap.add_argument("--fresh", action="store_true",
                    help="rebuild every page from an empty _build/html (jupyter-book build --all)")
    ap.add_argument("--strict", action="store_true", help="turn Sphinx warnings into errors (-W --keep-going)")
    args = ap.parse_args(argv)

    t_all = time.perf_counter()
    # The book states no number from evidence of other weights than the model it names.
    stale = stale_evidence()
    for line in stale:
        print(f"error: {line}", file=sys.stderr)
    if stale:
        return 1
    if not args.skip_execute:
        params_path = Path(args.params)
        if not params_path.is_absolute():
            params_path = ROOT / params_path
        if not params_path.exists():
            ap.error(f"--params {args.params}: no such file")
        params = load_params(params_path)
        notebooks = select_notebooks(args.only)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        log(f"executing {len(notebooks)} notebook(s) with {rel(params_path)}: {shown}")
        check_kernel(args.kernel)
        execute(notebooks, params, args.kernel, args.timeout)
    if not args.skip_build:
        check_outputs()
        build_book(args.fresh, args.strict)
    log(f"done in {time.perf_counter() - t_all:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
