"""Generated text on the walk-through and latency pages: counts built from the data, no
typed readings of runs in the pages' prose, and method texts that match the code."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tomato.book import pictures

ROOT = Path(__file__).resolve().parents[2]


def _cells(name: str, kind: str) -> list[str]:
    """The sources of notebook ``name``'s cells of ``kind`` ("markdown" or "code")."""
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


@pytest.mark.parametrize("keep_ratio", [0.5, 0.45, 0.9, 0.15, 0.33])
def test_budget_grid_counts_its_panels(keep_ratio: float) -> None:
    keeps = pictures.budget_keep_ratios(keep_ratio)
    assert keep_ratio in keeps and len(keeps) == len(set(keeps))
    assert keeps == sorted(keeps, reverse=True)
    expected = len(pictures.BUDGET_GRID_KEEPS)  # two full rows of three: no blank panel
    assert len(keeps) == expected
    assert pictures.budget_grid_title("chelsea", keeps, "random-init DeiT-B") == \
        f"chelsea at {expected} token budgets (random-init DeiT-B)"


def test_sim_text_reads_any_depth() -> None:
    import math

    assert pictures.sim_text(math.log(1e-7)) == "sim = 1.0e-7"
    assert pictures.sim_text(-115.0 * math.log(10)) == "sim = 1.0e-115"
    assert pictures.sim_text(math.log(3.2e-115)) == "sim = 3.2e-115"
    assert pictures.sim_text(-900.0 * math.log(10) + math.log(9.99)) == "sim = 1.0e-899"  # below float64
    assert pictures.sim_text(math.inf) == "sim = inf" and pictures.sim_text(-math.inf) == "sim = 0"


def test_merge_page_builds_the_budget_grid_from_its_keep_ratios() -> None:
    code = "\n".join(_cells("03_merge", "code"))
    assert "pictures.budget_keep_ratios(keep_ratio)" in code
    assert "pictures.budget_grid_title(" in code
    prose = " ".join(_cells("03_merge", "markdown"))
    assert not re.search(r"\b(six|seven) (keep ratios|token budgets)\b", prose)
    assert "rocket's sky stays" not in prose


# A number followed by a unit of time or a percent sign, e.g. "0.66 s", "317–361 ms", "6%".
_TYPED = re.compile(r"\d[\d.,]*(?:\s*[–-]\s*\d[\d.,]*)?\s*(?:s|ms|%)(?![\w])")
# Settings of a method, not readings of a run: the level of the bootstrap intervals.
_SETTINGS = {"95%"}


def _typed(text: str) -> list[str]:
    """The typed seconds and percents in ``text`` that are not method settings."""
    return [m for m in _TYPED.findall(text) if m not in _SETTINGS]


@pytest.mark.parametrize("name", ["08_paper_latency"])
def test_latency_prose_types_no_seconds_or_percents(name: str) -> None:
    for text in _cells(name, "markdown"):
        assert not _typed(text), text[:200]


def test_typed_number_detector() -> None:
    assert _typed("about 10–11 s per forward; 317–361 ms, about 3%; 0.66 s") == ["10–11 s", "317–361 ms", "3%",
                                                                                 "0.66 s"]
    assert not _typed("11 forwards at batch 1, section 2, `sim = 1e-7`, 4 cores, a 95% interval")


def test_method_texts_describe_the_propagation_labelling() -> None:
    # Issue 35: the parallel visit labels by propagation with a closure check; the N x N
    # reachability products are gone, and no text may still describe them.
    from tomato.core import pipeline, propagation, visit

    method = (ROOT / "book" / "method.md").read_text(encoding="utf-8")
    page = (ROOT / "notebooks" / "09_merge_cost.ipynb").read_text()
    stale = "flag that every labelling settled"
    for text in (method, pipeline.__doc__ or "", page):
        assert stale not in text and "reach_roots" not in text and "batched matrix products" not in text
    assert "closed" in method and "closure" in (pipeline.__doc__ or "")
    assert "Measured on" not in (ROOT / "tomato" / "core" / "visit.py").read_text(encoding="utf-8")
    assert "label propagation" in (visit.__doc__ or "") and "closed" in (propagation.__doc__ or "")
    # The open problem is solved exactly; whether faster is the merge-cost page's question.
    exact = method.index("The companion solves it **exactly**")
    assert "notebooks/09_merge_cost.ipynb" in method[exact:exact + 800]
