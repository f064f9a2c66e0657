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
    assert "Contracts: 2 kept, 0 broken" in out.stdout, out.stdout


def test_core_modules_are_listed_in_the_core_docstring() -> None:
    import tomato.core

    modules = {p.stem for p in (ROOT / "tomato" / "core").glob("*.py") if p.stem != "__init__"}
    doc = tomato.core.__doc__ or ""
    assert all(f"\n{m} " in doc for m in modules), sorted(m for m in modules if f"\n{m} " not in doc)
