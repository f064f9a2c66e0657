"""The oldest Python we promise (3.8: JetPack 5, community images for the original Nano)
is checked statically on every test run.

Two checks, because neither alone is enough:

* vermin (from PyPI) finds syntax, modules, functions and methods newer than 3.8
  (``match``, ``str.removeprefix``, ``importlib.resources.files``, ``dict | dict`` on
  literals ...) in the package and in the notebooks' code cells;
* a small AST pass finds what vermin lets through: builtin generics evaluated at run
  time (``Schedule = list[tuple[float, float]]``), dict union of a comprehension
  (``{k: v for ...} | {...}``) and type unions (``isinstance(x, int | None)``). Annotations themselves are fine: every module has
  ``from __future__ import annotations``, so they are never evaluated.

The real run under Python 3.8 with torch 1.13 is described in book/jetson.md.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIN_PYTHON = "3.8"
_GENERIC_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}
_TYPE_NAMES = _GENERIC_BUILTINS | {"int", "float", "str", "bool", "bytes", "complex"}


def _vermin() -> list[str]:
    exe = Path(sys.executable).with_name("vermin")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("vermin")
    if found is None:
        pytest.skip("vermin is not installed (pip install -e '.[test]')")
    return [found]


def _run_vermin(paths: list[Path]) -> subprocess.CompletedProcess:
    # --backport: these modules exist in 3.8's standard library; without it vermin
    # would only print tips. --violations lists just what needs a newer Python.
    cmd = [*_vermin(), "-q", f"-t={MIN_PYTHON}-", "--violations", "--no-tips", "--no-parse-comments",
           "--backport", "argparse", "--backport", "dataclasses", "--backport", "typing",
           *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _violations(proc: subprocess.CompletedProcess) -> list[str]:
    # vermin prints one "!2, 3.9  path" header per offending file, then the reasons; a
    # "could not be combined" note (e.g. torch's Tensor.long() read as Python 2's long)
    # is not a violation of the 3.8 target.
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return [ln for ln in lines if "requires" in ln or re.match(r"^!?2?, ?3\.(9|1\d)", ln.strip())]


def _notebook_code(tmp_path: Path) -> list[Path]:
    out = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        code = []
        for cell in cells:
            if cell.get("cell_type") != "code":
                continue
            src = "".join(cell["source"])
            # IPython magics and shell escapes are not Python.
            code.append("\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))))
        path = tmp_path / (nb.stem + ".py")
        path.write_text("\n\n".join(code) + "\n", encoding="utf-8")
        out.append(path)
    return out


def _is_dict(node: ast.AST) -> bool:
    return isinstance(node, (ast.Dict, ast.DictComp)) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict")


def _is_type(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in _TYPE_NAMES) or (
        isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _is_type(node.left))


def _runtime_newer(path: Path) -> list[str]:
    """Code that 3.8 rejects at run time but vermin lets through, as "file:line: code":
    subscripted builtins and collections.abc classes (``list[int]``, ``Callable[[], float]``,
    3.9), dict union (``{...} | {...}``, 3.9) and
    type unions (``int | None``, 3.10) outside annotations."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    try:
        name = str(path.relative_to(ROOT))
    except ValueError:
        name = path.name
    # Names bound to collections.abc classes (Callable, Sequence...): their subscripts
    # need 3.9 too when evaluated (typing's versions work on 3.8).
    abc_names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "collections.abc" for a in node.names}
    skip: set[int] = set()
    for node in ast.walk(tree):
        # Nodes inside annotations are never evaluated under postponed evaluation.
        for ann in [getattr(node, "annotation", None), getattr(node, "returns", None)]:
            if ann is not None:
                skip.update(id(n) for n in ast.walk(ann))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        generic = isinstance(node, ast.Subscript) and (
            (isinstance(node.value, ast.Name) and node.value.id in _GENERIC_BUILTINS | abc_names)
            or (isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Attribute)
                and ast.get_source_segment(source, node.value.value) == "collections.abc"))
        union = False
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.BitOr):
            left, right = (node.left, node.right) if isinstance(node, ast.BinOp) else (node.target, node.value)
            union = _is_dict(left) or _is_dict(right) or (_is_type(left) and _is_type(right))
        if generic or union:
            skip.update(id(n) for n in ast.walk(node))  # report the outermost only
            # get_source_segment, not ast.unparse (3.9): this test runs on 3.8 too.
            found.append((node.lineno, f"{name}:{node.lineno}: {ast.get_source_segment(source, node)}"))
    return [text for _, text in sorted(found)]


def test_package_needs_no_newer_python_than_3_8():
    proc = _run_vermin([ROOT / "tomato"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _violations(proc) == [], proc.stdout


def test_notebook_code_needs_no_newer_python_than_3_8(tmp_path):
    paths = _notebook_code(tmp_path)
    if not paths:
        pytest.skip("no notebooks")
    proc = _run_vermin(paths)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _violations(proc) == [], proc.stdout


def test_no_generics_or_unions_evaluated_at_run_time(tmp_path):
    files = sorted((ROOT / "tomato").rglob("*.py")) + _notebook_code(tmp_path)
    found = [hit for f in files for hit in _runtime_newer(f)]
    assert found == [], ("needs Python >= 3.9 at run time: use typing.List/Tuple/Union, "
                         "or {**a, **b} for a dict union:\n" + "\n".join(found))


def test_the_ast_pass_catches_what_vermin_misses(tmp_path):
    # The mechanism must be able to fail: a runtime alias is flagged, an annotation not.
    probe = tmp_path / "probe.py"
    probe.write_text("from __future__ import annotations\n"
                     "Schedule = list[tuple[float, float]]\n"
                     "def f(x: list[int]) -> dict[str, int | None]:\n    return {}\n"
                     "d = {k: 1 for k in 'ab'} | {'c': 2}\n"
                     "ok = isinstance(d, int | None)\n"
                     "flags = 1 | 2\n"
                     "from collections.abc import Callable\n"
                     "Clock = Callable[[], float]\n")
    assert [h.split(": ", 1)[1] for h in _runtime_newer(probe)] == [
        "list[tuple[float, float]]", "{k: 1 for k in 'ab'} | {'c': 2}", "int | None", "Callable[[], float]"]
    proc = _run_vermin([probe])
    bad = tmp_path / "bad.py"
    bad.write_text("import importlib.resources\nimportlib.resources.files('x')\n'ab'.removeprefix('a')\n")
    assert _violations(_run_vermin([bad])), "vermin no longer reports 3.9-only calls"
    assert proc.returncode == 0
