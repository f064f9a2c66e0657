"""Grouping patch tokens on their grid: the paper's visit, faithful and parallel.

Edges first: token i has a *directed* edge towards its neighbour j when ``A[i, j] >= sim``
(:func:`directed_edges`, decided like the reference code). Both visits then return
``labels: (B, N)`` (group id per token) and ``counts: (B,)`` (number of groups), with
groups numbered in the order their *root* (smallest member index) is met in row-major
order, which is the output order of the reference code.

:func:`faithful`
    Algorithms 1-2 of the paper: for i = 0..N-1, an unvisited i starts a new group and a
    depth-first visit enters neighbour j when the edge i -> j exists (the row of the token
    being expanded) and j is unvisited. Written with an explicit stack that reproduces the
    recursion's order exactly, so there is no recursion limit.

:func:`parallel`
    The paper's second open problem: a batched grouping with no Python loop per token.
    Edge rules:

    ``rule="directed"`` (default): **exactly the faithful partition**, computed in
    parallel. The faithful visit puts token j in the group of the *smallest token that
    can reach j* along directed edges: (1) no earlier root reaches j, or it would have
    claimed it; (2) that smallest token r is itself a root, since any earlier root
    reaching r would also reach j; (3) no token on a path r -> j was taken by an earlier
    root, for the same reason, so r's visit gets through to j. So the labels are
    "minimum ancestor" labels, computed by rounds of label propagation
    (:mod:`tomato.core.propagation`).

    ``rule="either"`` / ``rule="both"``: symmetrised alternatives that join neighbours
    when ``A[i, j] >= sim`` or / and ``A[j, i] >= sim`` and take connected components
    (min-label propagation with hooking and pointer jumping). Order-free by design; the
    faithful groups are unions of "both"-components and subsets of "either"-components,
    and all three rules agree where the directed edges are symmetric.
"""
from __future__ import annotations

import functools
import math
import sys
from typing import Literal, Sequence

import torch

from . import propagation
from .grid import DOWN, LEFT, RIGHT, UP, GridIndex, grid_index, grid_shape, neighbours

__all__ = [
    "LEFT", "RIGHT", "UP", "DOWN", "RULES", "METHODS", "grid_shape", "check_sim", "neighbours",
    "GridIndex", "grid_index", "neighbour_scores", "log_edges", "directed_edges", "faithful",
    "faithful_order", "undirected_edges", "components", "min_ancestors", "relabel_by_root",
    "parallel", "group",
]

Rule = Literal["directed", "either", "both"]
RULES: tuple[str, ...] = ("directed", "either", "both")
METHODS: tuple[str, ...] = ("faithful", "parallel")


def check_sim(sim: float | torch.Tensor) -> None:
    """Raise ValueError unless every threshold is a number >= 0 (``inf`` means no merge)."""
    t = torch.as_tensor(sim, dtype=torch.float64)
    if torch.isnan(t).any():
        raise ValueError("sim is NaN; use a threshold >= 0 (inf disables merging)")
    if (t < 0).any():
        raise ValueError(f"sim must be >= 0 (scores are probabilities), got {sim}")


def neighbour_scores(
    a: torch.Tensor, grid: Sequence[int], index: GridIndex | None = None
) -> torch.Tensor:
    """Scores of each token towards its four neighbours.

    a: (B, N, N) row-stochastic distribution (or its logs) -> (B, N, 4) with
    ``a[b, i, nbr(i, d)]``, ``-inf`` where the neighbour is off the grid (so no threshold
    admits it). ``index``: the grid's tables, when the caller already built them.
    """
    gi = index if index is not None else grid_index(grid, a.shape[-1], a.device)
    s = a.gather(-1, gi.safe.expand(a.shape[0], -1, -1))
    return s.masked_fill(gi.off_grid, float("-inf"))


def log_edges(
    scores: torch.Tensor, log_sim: torch.Tensor, probs: torch.Tensor | None = None
) -> torch.Tensor:
    """The threshold test on natural-log scores, decided like the reference code.

    scores: (..., N, 4) float64 logs of probabilities; log_sim: broadcastable to it.
    Where ``float32(sim)`` is a positive float32 (the reference's range: it compares a
    float32 probability with the threshold rounded to float32), the test is
    ``float32(exp(score)) >= float32(exp(log_sim))``: a score that is the log of a float32
    probability gets that probability back exactly, so the decision is the reference's.
    Below float32 underflow (``float32(sim) == 0``) it compares the logs instead, which
    keeps an order where every probability would be 0. Monotone in ``log_sim``.
    Off-grid entries (``-inf``) must be masked by the caller. ``probs``: the float32
    ``exp(scores)`` when the caller already holds it (tests of many thresholds at once).
    """
    p = scores.exp().float() if probs is None else probs
    s = log_sim.exp().float()
    # Where s == 0, p >= s always holds and the logs decide; where s > 0, p >= s does.
    # (Written without a boolean where, which ONNX Runtime does not implement.)
    return (p >= s) & ((s > 0) | (scores >= log_sim))


def directed_edges(
    scores: torch.Tensor, sim: float | torch.Tensor, *, log: bool = False
) -> torch.Tensor:
    """scores: (B, N, 4), sim: scalar or (B,) -> (B, N, 4) bool, edge i -> nbr when >= sim.

    With ``log=True`` both ``scores`` and ``sim`` are natural logs (``sim = -inf`` joins
    every neighbour, ``+inf`` none), decided by :func:`log_edges`; off-grid entries
    (``-inf``) never pass. Log thresholds given as tensors are trusted (validating them
    would make the host wait for the device); the pipeline validates ``sim`` when it is set.
    """
    if not log:
        check_sim(sim)
    elif not isinstance(sim, torch.Tensor) and math.isnan(sim):
        raise ValueError("log sim is NaN")
    sim_t = torch.as_tensor(sim, dtype=torch.float64, device=scores.device)
    if sim_t.ndim == 1:
        sim_t = sim_t.view(-1, 1, 1)
    if log:
        return log_edges(scores.double(), sim_t) & (scores > float("-inf"))
    return scores >= sim_t.to(scores.dtype)


@functools.lru_cache(maxsize=16)
def _neighbour_lists(h: int, w: int) -> tuple[list[list[int]], list[int]]:
    """The grid's neighbour lists and, per token, the bits of its on-grid slots."""
    nbr = neighbours(h, w).tolist()
    on = [sum(1 << 8 * d for d in range(4) if nb[d] >= 0) for nb in nbr]
    return nbr, on


def _codes(edges: torch.Tensor, grid: Sequence[int]) -> tuple[list[list[int]], list[list[int]]]:
    """edges: (B, N, 4) bool -> per image, each token's edges as one int (bit 8 d: the edge
    towards neighbour d, on the grid only), and the grid's neighbour lists. The four bools
    of a token are read as the four bytes of one int32: one small copy to the host."""
    b, n, _ = edges.shape
    h, w = grid_shape(n, grid)
    nbr, on = _neighbour_lists(h, w)
    # Little-endian bytes: slot d is bit 8 d (the int's value does not matter, its bits do).
    packed = edges.to(torch.uint8).contiguous().view(torch.int32).view(b, n).tolist()
    if sys.byteorder != "little":  # pragma: no cover - every machine torch supports
        packed = [[int.from_bytes(c.to_bytes(4, "big"), "little") for c in row] for row in packed]
    return [[c & m for c, m in zip(row, on)] for row in packed], nbr


def _faithful_one(codes: list[int], nbr: list[list[int]], order: list[int] | None = None) -> list[int]:
    """One image: Algorithms 1-2 with an explicit stack. Returns a label per token and,
    when ``order`` is given, appends the tokens to it in the order they are visited."""
    n = len(codes)
    labels = [-1] * n
    group = 0
    for root in range(n):
        if labels[root] >= 0:
            continue
        labels[root] = group
        if order is not None:
            order.append(root)
        # A frame [token, next neighbour slot to try]: the recursion's loop counter.
        stack = [[root, 0]] if codes[root] else []
        while stack:
            frame = stack[-1]
            i, d = frame
            code, around = codes[i], nbr[i]
            while d < 4 and not (code >> 8 * d & 1 and labels[around[d]] < 0):
                d += 1
            if d == 4:
                stack.pop()
                continue
            frame[1] = d + 1
            j = around[d]
            labels[j] = group
            if order is not None:
                order.append(j)
            if codes[j]:
                stack.append([j, 0])
        group += 1
    return labels


def faithful(edges: torch.Tensor, grid: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's sequential visit, one image at a time.

    edges: (B, N, 4) bool directed edges (:func:`directed_edges`)
    -> labels (B, N) long, counts (B,) long (made on the host, then copied to the device).
    """
    b, n, _ = edges.shape
    codes, nbr = _codes(edges, grid)
    # Plain Python lists: per-token torch indexing would cost microseconds per access.
    rows = [_faithful_one(c, nbr) for c in codes]
    labels = torch.tensor(rows, dtype=torch.long).view(b, n).to(edges.device)
    counts = torch.tensor([max(r, default=-1) + 1 for r in rows], dtype=torch.long).to(edges.device)
    return labels, counts


def faithful_order(edges: torch.Tensor, grid: Sequence[int]) -> tuple[list[int], list[int]]:
    """The faithful visit of one image, step by step (for pictures of the flood fill).

    edges: (N, 4) bool -> (order, labels): tokens in the order the visit reaches them,
    and the final label of each token.
    """
    codes, nbr = _codes(edges[None], grid)
    order: list[int] = []
    labels = _faithful_one(codes[0], nbr, order)
    return order, labels


def undirected_edges(
    edges: torch.Tensor, grid: Sequence[int], rule: str = "either"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine directed edges into undirected ones.

    edges: (B, N, 4) bool -> horizontal (B, H, W-1) joining (r, c)-(r, c+1) and
    vertical (B, H-1, W) joining (r, c)-(r+1, c).
    """
    b, n, _ = edges.shape
    h, w = grid_shape(n, grid)
    e = edges.view(b, h, w, 4)
    right, left_of_next = e[:, :, :-1, RIGHT], e[:, :, 1:, LEFT]
    down, up_of_below = e[:, :-1, :, DOWN], e[:, 1:, :, UP]
    if rule == "either":
        return right | left_of_next, down | up_of_below
    if rule == "both":
        return right & left_of_next, down & up_of_below
    raise ValueError(f"unknown edge rule {rule!r}; choose one of {RULES}")


def components(horizontal: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
    """Connected components of a grid graph, every image of the batch at once.

    horizontal: (B, H, W-1) bool, vertical: (B, H-1, W) bool -> (B, N) long, each token
    labelled with the smallest row-major index in its component.
    """
    b, h = horizontal.shape[:2]
    w = vertical.shape[2]
    n = h * w
    lab = torch.arange(n, device=horizontal.device).view(1, h, w).expand(b, h, w).clone()
    big = torch.tensor(n, device=lab.device)
    while True:
        # 1. every token takes the smallest label among itself and its joined neighbours
        m = lab.clone()
        m[:, :, :-1] = torch.minimum(m[:, :, :-1], torch.where(horizontal, lab[:, :, 1:], big))
        m[:, :, 1:] = torch.minimum(m[:, :, 1:], torch.where(horizontal, lab[:, :, :-1], big))
        m[:, :-1, :] = torch.minimum(m[:, :-1, :], torch.where(vertical, lab[:, 1:, :], big))
        m[:, 1:, :] = torch.minimum(m[:, 1:, :], torch.where(vertical, lab[:, :-1, :], big))
        flat, old = m.view(b, n), lab.view(b, n)
        # 2. hooking: the token my old label points at learns my new label too, so a
        #    small label crosses a long snake-shaped component in few rounds
        flat = flat.scatter_reduce(1, old, flat, reduce="amin")
        # 3. pointer jumping: follow labels to their labels (halves chain lengths)
        flat = flat.gather(1, flat)
        flat = flat.gather(1, flat)
        if torch.equal(flat, old):
            return flat
        lab = flat.view(b, h, w)


def min_ancestors(edges: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Smallest token that reaches each token along directed grid edges, all images at once.

    edges: (B, N, 4) bool directed edges -> (B, N) long. Equals the faithful visit's roots
    (see the module docstring for why); exact (:func:`tomato.core.propagation.min_ancestors`).
    """
    gi = grid_index(grid, edges.shape[1], edges.device)
    return propagation.min_ancestors(edges & gi.on_grid, gi)


def relabel_by_root(root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """root: (B, N) smallest member index per token -> labels 0..G-1 in root order, counts (B,)."""
    n = root.shape[1]
    is_root = root == torch.arange(n, device=root.device)
    rank = is_root.long().cumsum(dim=1) - 1
    return rank.gather(1, root), is_root.sum(dim=1)


def parallel(
    edges: torch.Tensor, grid: Sequence[int], rule: str = "directed"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched, vectorised grouping (see the module docstring for the edge rules).

    edges: (B, N, 4) bool directed edges -> labels (B, N) long, counts (B,) long.
    With the default ``rule="directed"`` the result equals :func:`faithful` exactly.
    """
    if rule == "directed":
        return relabel_by_root(min_ancestors(edges, grid))
    horizontal, vertical = undirected_edges(edges, grid, rule)
    return relabel_by_root(components(horizontal, vertical))


def group(
    edges: torch.Tensor, grid: Sequence[int], method: str = "faithful", rule: str = "directed"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch on ``method`` ("faithful" | "parallel"). Shapes as in :func:`faithful`."""
    if method == "faithful":
        return faithful(edges, grid)
    if method == "parallel":
        return parallel(edges, grid, rule)
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
