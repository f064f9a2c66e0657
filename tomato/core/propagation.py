"""Label propagation on the patch grid: the minimum-ancestor labels, in rounds.

:func:`tomato.core.visit.reach_roots` computes the faithful visit's labels (each token's
smallest ancestor along directed edges) exactly, by a fixed number of matrix products.
This module computes the same labels by rounds of min-scans along straight runs of edges
and pointer jumps, which is far cheaper per labelling but exact only once *settled*; an
unsettled labelling can only over-count the groups. The budget search
(:func:`tomato.core.budget.search_parallel`) labels its many probe thresholds this way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .visit import DOWN, LEFT, RIGHT, UP, GridIndex, grid_index

__all__ = ["ROUNDS", "sources", "Runs", "runs", "propagate", "settle", "min_ancestors_by_rounds"]

# Default rounds of label propagation per call of propagate (and per step of settle). A
# round carries a label along a whole straight run of edges, so a few rounds cover paths
# with few turns. The count trades time per call against how often a labelling is left
# unsettled, never correctness: settle runs more rounds until nothing changes. (The budget
# search passes its own rounds, budget.PROBE_ROUNDS, and checks its pick by reachability.)
ROUNDS = 3
# Run offsets must exceed any label (N <= 2**20 tokens is far beyond any ViT grid).
_RUN = 1 << 20


def sources(edges: torch.Tensor, index: GridIndex) -> torch.Tensor:
    """Which tokens each token hears from.

    edges: (M, N, 4) bool directed edges -> (M, 5 N) long: for token j, its four grid
    neighbours i with an edge i -> j (j itself where there is none) and j itself.
    """
    m, n, _ = edges.shape
    inward = edges.reshape(m, 4 * n)[:, index.inward] & index.on_grid
    src = torch.where(inward, index.nbr, index.me.view(n, 1))
    return torch.cat([src, index.me.view(1, n, 1).expand(m, n, 1)], dim=2).view(m, 5 * n)


@dataclass(frozen=True)
class Runs:
    """Straight runs of edges, as offsets that keep a min-scan inside its run.

    Each of ``right, left, down, up``: (M, H, W) long, a multiple of a constant larger
    than any label, constant along a run. ``right`` and ``down`` grow in the scan's
    direction (a prefix minimum of ``label - offset`` never reaches back into an earlier
    run); ``left`` and ``up`` grow against it, so those scans use ``label + offset``.
    """

    right: torch.Tensor
    left: torch.Tensor
    down: torch.Tensor
    up: torch.Tensor


def runs(edges: torch.Tensor, grid: tuple[int, int]) -> Runs:
    """edges: (M, N, 4) bool -> the :class:`Runs` of every image (a few ops, no loop)."""
    m = edges.shape[0]
    h, w = grid
    cut = (~edges).view(m, h, w, 4).long() * _RUN  # a break in the run, per slot
    along_w, along_h = cut.cumsum(2), cut.cumsum(1)
    # Rightward scan over c: a run breaks before c when c-1 has no RIGHT edge, so its
    # offset counts the breaks strictly before c; a leftward (suffix) scan breaks after c
    # when c+1 has no LEFT edge: the breaks up to c grow rightwards, against that scan.
    return Runs(along_w[..., RIGHT] - cut[..., RIGHT], along_w[..., LEFT],
                along_h[..., DOWN] - cut[..., DOWN], along_h[..., UP])


def _cummin(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Prefix minimum of ``x`` along ``dim`` (``cummin``'s values).

    ONNX has no cummin, so while exporting this is a log-step (Hillis-Steele) scan:
    ``ceil(log2(n))`` exact minimums with the tensor shifted by 1, 2, 4 ... (each position
    below the shift takes itself). Eager and compiled runs keep the one cummin kernel,
    which on a CPU is far faster than any masked formulation."""
    if not torch.onnx.is_in_onnx_export():
        return x.cummin(dim).values
    n, s = x.shape[dim], 1
    while s < n:
        x = torch.minimum(x, torch.cat([x.narrow(dim, 0, s), x.narrow(dim, 0, n - s)], dim))
        s *= 2
    return x


def _scan_round(lab: torch.Tensor, r: Runs) -> torch.Tensor:
    """One round: min-scans along the straight runs right, left, down and up, then two
    pointer jumps (my label's label is an ancestor of my ancestor, so mine too).
    lab: (M, N) -> (M, N)."""
    m, n = lab.shape
    h, w = r.right.shape[1:]
    x = lab.view(m, h, w)
    x = _cummin(x - r.right, 2) + r.right
    x = _cummin((x + r.left).flip(2), 2).flip(2) - r.left
    x = _cummin(x - r.down, 1) + r.down
    x = _cummin((x + r.up).flip(1), 1).flip(1) - r.up
    lab = x.reshape(m, n)
    lab = lab.gather(1, lab)
    return lab.gather(1, lab)


def propagate(
    edges: torch.Tensor,
    index: GridIndex,
    rounds: int = ROUNDS,
    lab: torch.Tensor | None = None,
    *,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Minimum-ancestor labels after ``rounds`` rounds, with convergence flags, no host sync.

    edges: (M, N, 4) bool; lab: (M, N) labels to continue from (default: each token its
    own index) -> labels (M, N) and ``settled``: (M,) bool, True where no token hears a
    label smaller than its own (None with ``check=False``). Labels only ever fall and each
    is an ancestor of its token (or the token), so a settled labelling is exactly the
    minimum ancestor, and an unsettled one can only over-count the groups (a token may
    still think it is a root). A round moves a label along a whole straight run of edges,
    so the rounds needed grow with the number of turns on the longest path, not its length.
    """
    m, n, _ = edges.shape
    r = runs(edges, (index.h, index.w))
    if lab is None:
        lab = index.me.expand(m, n)
    for _ in range(rounds):
        lab = _scan_round(lab, r)
    if not check:
        return lab, None
    src = sources(edges, index)
    settled = (lab.gather(1, src).view(m, n, 5).amin(dim=2) == lab).all(dim=1)
    return lab, settled


def settle(
    edges: torch.Tensor, index: GridIndex, lab: torch.Tensor, settled: torch.Tensor
) -> torch.Tensor:
    """Finish a labelling that :func:`propagate` left unsettled (pathological grids only):
    more rounds, one host sync per batch of rounds, until nothing changes."""
    while not bool(settled.all()):
        lab, flags = propagate(edges, index, ROUNDS, lab)
        assert flags is not None  # propagate checks unless told not to
        settled = flags
    return lab


def min_ancestors_by_rounds(edges: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """:func:`tomato.core.visit.min_ancestors` by label propagation (:func:`propagate`, then :func:`settle`)."""
    gi = grid_index(grid, edges.shape[1], edges.device)
    lab, settled = propagate(edges, gi)
    assert settled is not None
    return settle(edges, gi, lab, settled)
