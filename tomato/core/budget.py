"""Choosing ``sim`` automatically from a token budget (the paper's first open problem).

Given a budget of ``k`` patch tokens per image, pick per image the *largest* threshold
whose grouping keeps at most ``k`` groups: merge as little as the budget allows. The
candidates are the image's own neighbour scores (the group count can only change where
``sim`` crosses one of them), searched by bisection with every image of the batch moving
at once, so the cost is ``ceil(log2(4N))`` groupings (about 10 for a 14x14 grid).

The group count never rises as ``sim`` falls: more edges can only give a token a smaller
ancestor (see :mod:`tomato.core.visit`), for the faithful visit as for the symmetrised rules,
so bisection finds the tightest threshold. It also only ever accepts a candidate whose
grouping was checked to fit the budget.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import visit


def budget_tokens(num_patches: int, keep_ratio: float | None = None, tokens: int | None = None) -> int:
    """Patch tokens to keep, from a ratio in (0, 1] or an absolute count (>= 1)."""
    if (keep_ratio is None) == (tokens is None):
        raise ValueError("give exactly one of keep_ratio or tokens")
    if keep_ratio is not None:
        if not (isinstance(keep_ratio, (int, float)) and 0.0 < keep_ratio <= 1.0):
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio!r}")
        return max(1, math.ceil(keep_ratio * num_patches))
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise ValueError(f"tokens must be an integer >= 1, got {tokens!r}")
    return min(tokens, num_patches)


def search_sim(
    scores: torch.Tensor,
    grid: Sequence[int],
    budget: int,
    method: str = "faithful",
    rule: str = "directed",
    *,
    log: bool = False,
) -> torch.Tensor:
    """Per-image threshold for a token budget.

    scores: (B, N, 4) neighbour scores (:func:`tomato.core.visit.neighbour_scores`), or their
    natural logs with ``log=True`` (then the result is a log threshold too)
    -> sim: (B,) float64, ``inf`` where the image already fits the budget unmerged.
    """
    b, n, _ = scores.shape
    if n <= budget:
        return torch.full((b,), math.inf, dtype=torch.float64, device=scores.device)
    # Candidates in descending order; off-grid entries (-inf) sort last and are never used.
    cand = scores.reshape(b, -1).double().sort(dim=1, descending=True).values
    valid = int(torch.isfinite(cand[0]).sum())
    rows = torch.arange(b, device=scores.device)
    # Invariant: candidate `hi` fits the budget (the smallest score joins every edge, so
    # one group); candidate `lo` does not (lo = -1 stands for sim = inf: no merge).
    lo = torch.full((b,), -1, dtype=torch.long, device=scores.device)
    hi = torch.full((b,), valid - 1, dtype=torch.long, device=scores.device)
    while bool((hi - lo > 1).any()):
        mid = (lo + hi) // 2
        active = hi - lo > 1
        sim = cand[rows, mid.clamp_min(0)]
        edges = visit.directed_edges(scores.double(), sim, log=log)
        _, counts = visit.group(edges, grid, method, rule)
        fits = counts <= budget
        hi = torch.where(active & fits, mid, hi)
        lo = torch.where(active & ~fits, mid, lo)
    return cand[rows, hi]
