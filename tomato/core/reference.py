"""The paper's merge step for one image, written as plainly as the paper states it.

Algorithms 1-2: the row-softmax of the patch features' dot products scores every token
towards every other; for i = 0..N-1, an unvisited token starts a group and a depth-first
visit enters each neighbour j (left, right, up, down) with ``A[i, j] >= sim`` that no
group holds yet; each group becomes the mean of its members. Like the authors' code this
recurses in Python with one torch op per test, which is why it is slow (the benchmark's
"reference-style loop") and why it is here: the rest of the core computes exactly this,
batched, and ``tests/core/test_reference.py`` holds :func:`tomato.core.pipeline.merge_at_once`
equal to it.
"""
from __future__ import annotations

import sys

import torch

from .similarity import feature_distribution

__all__ = ["merge"]


def merge(x: torch.Tensor, sim: float, grid: tuple[int, int], num_prefix_tokens: int = 1
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (1, P + N, C) tokens after block 0's attention residual -> merged (1, P + G, C)
    (prefix tokens, then one mean per group in the order the groups start) and their
    sizes (1, P + G, 1)."""
    h, w = grid
    p = x[0, num_prefix_tokens:]
    a = feature_distribution(p[None])[0]  # (N, N), each row sums to 1
    n = p.shape[0]
    visited = torch.zeros(n, dtype=torch.bool)
    groups: list[list[int]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * n))

    def visit(i: int, group: list[int]) -> None:
        visited[i] = True
        group.append(i)
        r, c = divmod(i, w)
        for j, on_grid in ((i - 1, c > 0), (i + 1, c < w - 1), (i - w, r > 0), (i + w, r < h - 1)):
            if on_grid and not visited[j] and a[i, j] >= sim:
                visit(j, group)

    for i in range(n):
        if not visited[i]:
            group: list[int] = []
            visit(i, group)
            groups.append(group)
    merged = torch.stack([p[g].mean(dim=0) for g in groups])
    sizes = torch.tensor([1.0] * num_prefix_tokens + [float(len(g)) for g in groups])
    return torch.cat([x[0, :num_prefix_tokens], merged])[None], sizes.view(1, -1, 1)
