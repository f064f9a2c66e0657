"""Choosing ``sim`` automatically from a token budget (the paper's first open problem).

Given a budget of ``k`` patch tokens per image, pick per image the *largest* threshold
whose grouping keeps at most ``k`` groups: merge as little as the budget allows. The
candidates are the image's own neighbour scores (the group count can only change where
``sim`` crosses one of them).

:func:`search_sim` bisects with every image of the batch moving at once, one grouping per
step (``ceil(log2(4N))``, about 10 for a 14x14 grid), each read on the host.
:func:`search_parallel` is the accelerator's version: two rounds of a K-ary search
(``K = ceil(sqrt(V))`` for V candidates, 27 on a 14x14 grid) that group all ``K - 1``
probe thresholds of every image in one batched labelling, with the next bracket picked
on the device. Its operation count does not depend on the batch and it never waits for
the device; it returns the pick and the candidate above it, which the caller checks
by one more labelling with its closure check (:mod:`tomato.core.propagation`) before
accepting.

The group count never rises as ``sim`` falls: more edges can only give a token a smaller
ancestor (see :mod:`tomato.core.visit`), for the faithful visit as for the symmetrised rules,
so bisection finds the tightest threshold. It also only ever accepts a candidate whose
grouping was checked to fit the budget.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import propagation, visit
from .grid import GridIndex

__all__ = ["PROBE_ROUNDS", "STATIC_PROBE_ROUNDS", "budget_tokens", "search_sim", "search_parallel"]

# Label-propagation rounds of the probe labellings of search_parallel's two levels. An
# unsettled labelling only over-counts groups, so too few rounds can cost a fallback to
# the bisection, never a wrong pick; more rounds cost ops on every forward.
PROBE_ROUNDS = (3, 3)
# Static mode cannot fall back (that needs the host), so it buys exactness with rounds:
# on 160 Imagenette val photos through the model trained here, (5, 5) probes and four
# rounds for the pick and the one above (pipeline.STATIC_BRACKET_ROUNDS) confirm the
# bracket on 157 / 159 / 160 / 160 / 160 photos at budgets of 10 / 49 / 98 / 138 / 176
# tokens; (4, 4) on 156 / 159, (6, 6) on 157 / 160 (the rest are flagged, not exact).
STATIC_PROBE_ROUNDS = (5, 5)


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
    # A score that is not a number (NaN or +inf activations of one image) joins no edge,
    # so that image cannot move the others' searches; each image counts its own candidates.
    clean = scores.double().masked_fill(~torch.isfinite(scores) & (scores != -math.inf), -math.inf)
    cand = clean.reshape(b, -1).sort(dim=1, descending=True).values
    valid = torch.isfinite(cand).sum(dim=1)
    rows = torch.arange(b, device=scores.device)
    # Invariant: candidate `hi` fits the budget (the smallest score joins every edge, so
    # one group); candidate `lo` does not (lo = -1 stands for sim = inf: no merge).
    lo = torch.full((b,), -1, dtype=torch.long, device=scores.device)
    hi = valid - 1
    while bool((hi - lo > 1).any()):
        mid = (lo + hi) // 2
        active = hi - lo > 1
        sim = cand[rows, mid.clamp_min(0)]
        edges = visit.directed_edges(clean, sim, log=log)
        _, counts = visit.group(edges, grid, method, rule)
        fits = counts <= budget
        hi = torch.where(active & fits, mid, hi)
        lo = torch.where(active & ~fits, mid, lo)
    # An image without a single usable score keeps its tokens (sim = inf).
    return torch.where(valid > 0, cand[rows, hi.clamp_min(0)], math.inf)


def search_parallel(
    scores: torch.Tensor, index: GridIndex, budget: int, rounds: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bracket each image's budget threshold between two adjacent candidates, no host sync.

    scores: (B, N, 4) natural-log neighbour scores (``-inf`` off the grid); index: the
    grid's tables -> ``(log_sim, log_sim_above, start)``: the candidate the search picks
    and the next larger one, each (B,) float64 (``inf`` when there is none), and (B, N)
    labels that are ancestors under both (a head start for labelling them). Requires
    ``N > budget``. The pick is :func:`search_sim`'s exactly when an exact labelling finds
    that ``log_sim`` fits the budget and ``log_sim_above`` does not (the caller checks;
    the group count never rises as ``sim`` falls, so the tightest fitting candidate is the
    one right after a misfit).

    Per image, on positions in the candidates sorted high to low, ``hi`` fits (the lowest
    score joins every grid edge: one group) and ``lo`` does not (``-1``: ``sim = inf``).
    Each round probes ``K - 1`` positions spread over ``(lo, hi]`` and keeps the tightest
    bracket; two rounds shrink ``V <= K**2`` candidates to adjacent positions. Probes are
    labelled by ``rounds`` rounds of :func:`tomato.core.propagation.propagate`, which can only
    over-count groups, so a probe that seems to fit does fit: only ``lo`` can be wrong,
    which is what the caller's exact check catches. ``rounds``: rounds per level
    (default :data:`PROBE_ROUNDS`).
    """
    b, n, _ = scores.shape
    v = index.num_edges
    k = math.isqrt(v - 1) + 1  # ceil(sqrt(v)): two rounds suffice
    cand = scores.reshape(b, 4 * n).sort(dim=1, descending=True).values
    cand = torch.cat([cand, cand.new_full((b, 1), math.inf)], dim=1)  # position -1: inf
    p = scores.exp().float().unsqueeze(1)  # the float32 probabilities, for visit.log_edges
    steps = torch.arange(1, k, device=scores.device)
    lo = torch.full((b, 1), -1, dtype=torch.long, device=scores.device)
    hi = torch.full((b, 1), v - 1, dtype=torch.long, device=scores.device)
    start = index.me.expand(b, n)  # the labels at sim = inf: every token its own
    for r in PROBE_ROUNDS if rounds is None else rounds:
        pos = lo + (steps * (hi - lo) + k - 1) // k  # (B, K-1): lo + ceil(m (hi - lo) / K)
        thr = cand.gather(1, pos).view(b, k - 1, 1, 1)
        edges = visit.log_edges(scores.unsqueeze(1), thr, p) & index.on_grid
        # Every probe lies in (lo, hi]: its edges include those of lo, whose labels
        # (ancestors there, so ancestors here too) leave mostly the few edges between lo
        # and the probe to propagate.
        begin = start.unsqueeze(1).expand(b, k - 1, n).reshape(-1, n)
        lab = propagation.propagate(edges.view(b * (k - 1), n, 4), index, r, begin).view(b, k - 1, n)
        fits = (lab == index.me).sum(dim=2) <= budget
        hi = torch.minimum(hi, torch.where(fits, pos, v).amin(dim=1, keepdim=True))
        last = torch.where(fits | (pos > hi), -1, pos).amax(dim=1, keepdim=True)
        # The new lo's labels (kept where no probe missed: lo did not move).
        at = torch.cat([(pos == last).long(), (last < 0).long()], dim=1).argmax(dim=1)
        both = torch.cat([lab, start.unsqueeze(1)], dim=1)
        start = both.gather(1, at.view(b, 1, 1).expand(b, 1, n)).view(b, n)
        lo = torch.maximum(lo, last)
    picked = cand.gather(1, torch.cat([hi, lo.remainder(4 * n + 1)], dim=1))
    return picked[:, 0], picked[:, 1], start
