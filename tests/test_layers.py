"""The package's three layers import one way only (book -> harness -> core), and the core
needs nothing beyond torch and timm. The contracts live in pyproject.toml; import-linter
(a maintained tool for exactly this) checks them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )


def test_import_contracts_hold() -> None:
    pytest.importorskip("importlinter")
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken" in out.stdout, out.stdout


def test_core_modules_are_listed_in_the_core_docstring() -> None:
    import tomato.core

    modules = {p.stem for p in (ROOT / "tomato" / "core").glob("*.py") if p.stem != "__init__"}
    doc = tomato.core.__doc__ or ""
    assert all(f"\n{m} " in doc for m in modules), sorted(m for m in modules if f"\n{m} " not in doc)


def test_ruff_finds_no_unused_or_undefined_names() -> None:
    # pyflakes' rules (unused imports and variables, undefined names, names in __all__
    # that do not exist), configured in pyproject.toml.
    pytest.importorskip("ruff")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                          "tomato", "tests", "scripts", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_core_modules_declare_their_public_names() -> None:
    import importlib

    for p in sorted((ROOT / "tomato" / "core").glob("*.py")):
        if p.stem == "__init__":
            continue
        module = importlib.import_module(f"tomato.core.{p.stem}")
        names = getattr(module, "__all__", None)
        assert names, f"tomato.core.{p.stem} has no __all__"
        assert all(hasattr(module, n) for n in names), p.stem


def test_mypy_strict_passes_on_the_core() -> None:
    pytest.importorskip("mypy")
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
