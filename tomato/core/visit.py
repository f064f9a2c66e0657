"""Grouping patch tokens on their grid: the paper's visit, faithful and parallel.

Patch tokens are indexed row-major on an ``H x W`` grid (``i = row * W + col``). Each
token has up to four neighbours, always tried in the order LEFT, RIGHT, UP, DOWN.
Both visits return ``labels: (B, N)`` (group id per token) and ``counts: (B,)`` (number of
groups), with groups numbered in the order their *root* (smallest member index) is met in
row-major order, which is the output order of the reference code.

:func:`faithful`
    Algorithms 1-2 of the paper: for i = 0..N-1, an unvisited i starts a new group and a
    depth-first visit enters neighbour j when ``A[i, j] >= sim`` (the row of the token
    being expanded: a *directed* edge i -> j) and j is unvisited. Written with an explicit
    stack that reproduces the recursion's order exactly, so there is no recursion limit.

:func:`parallel`
    The paper's second open problem: a batched grouping with no Python loop per token.
    Edge rules:

    ``rule="directed"`` (default): **exactly the faithful partition**, computed in
    parallel. The faithful visit puts token j in the group of the *smallest token that
    can reach j* along directed edges ``A[i, j] >= sim``: (1) no earlier root reaches j,
    or it would have claimed it; (2) that smallest token r is itself a root, since any
    earlier root reaching r would also reach j; (3) no token on a path r -> j was taken
    by an earlier root, for the same reason, so r's visit gets through to j. So the
    labels are "minimum ancestor" labels, computed by reachability (:func:`reach_roots`:
    repeated squaring of the reachability matrix, a fixed number of matrix products).
    Label propagation (:mod:`tomato.core.propagation`) computes the same labels in
    rounds; the budget search uses it for its probes and checks its pick by reachability.

    ``rule="either"`` / ``rule="both"``: symmetrised alternatives that join neighbours
    when ``A[i, j] >= sim`` or / and ``A[j, i] >= sim`` and take connected components
    (min-label propagation with hooking and pointer jumping). Order-free by design; the
    faithful groups are unions of "both"-components and subsets of "either"-components,
    and all three rules agree where the directed edges are symmetric.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

__all__ = [
    "LEFT", "RIGHT", "UP", "DOWN", "RULES", "METHODS", "grid_shape", "check_sim", "neighbours",
    "GridIndex", "grid_index", "neighbour_scores", "log_edges", "directed_edges", "faithful",
    "faithful_order", "undirected_edges", "components", "reach_roots", "min_ancestors",
    "relabel_by_root", "parallel", "group",
]

LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3
Rule = Literal["directed", "either", "both"]
RULES: tuple[str, ...] = ("directed", "either", "both")
METHODS: tuple[str, ...] = ("faithful", "parallel")


def grid_shape(n: int, grid: Sequence[int] | None = None) -> tuple[int, int]:
    """Validate or infer the patch grid for ``n`` tokens.

    With ``grid=None`` the grid must be square; a non-square count is an error rather than
    a guess, because a wrong width silently joins tokens across row ends.
    """
    if grid is not None:
        h, w = int(grid[0]), int(grid[1])
        if h <= 0 or w <= 0 or h * w != n:
            raise ValueError(f"grid {h}x{w} does not match {n} patch tokens")
        return h, w
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(
            f"{n} patch tokens do not form a square grid; pass grid=(H, W) explicitly"
        )
    return side, side


def check_sim(sim: float | torch.Tensor) -> None:
    """Raise ValueError unless every threshold is a number >= 0 (``inf`` means no merge)."""
    t = torch.as_tensor(sim, dtype=torch.float64)
    if torch.isnan(t).any():
        raise ValueError("sim is NaN; use a threshold >= 0 (inf disables merging)")
    if (t < 0).any():
        raise ValueError(f"sim must be >= 0 (scores are probabilities), got {sim}")


def _raw_neighbours(h: int, w: int, device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(h * w, device=device)
    row, col = idx // w, idx % w
    nbr = torch.stack([idx - 1, idx + 1, idx - w, idx + w], dim=1)
    on = torch.stack([col > 0, col < w - 1, row > 0, row < h - 1], dim=1)
    return nbr, on


def neighbours(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Neighbour index table: (N, 4) in LEFT, RIGHT, UP, DOWN order, -1 off the grid.

    Built arithmetically on ``device`` (no host-to-device copy, which would sync a GPU).
    """
    nbr, on = _raw_neighbours(h, w, device)
    return torch.where(on, nbr, -1)


@dataclass(frozen=True)
class GridIndex:
    """Index tables of an ``H x W`` grid, built once per forward on the tokens' device.

    nbr: (N, 4) neighbour of each token (LEFT, RIGHT, UP, DOWN), -1 off the grid;
    inward: (N, 4) for token j and slot d, the flat index ``i * 4 + opposite(d)`` into
    (N, 4) edges of the edge from ``i = nbr[j, d]`` towards j (0 off the grid);
    on_grid: (N, 4) bool; me: (N,) ``arange(N)``; target: (N, 4) ``nbr`` with N (a spare
    column) off the grid; num_edges: directed grid edges, ``2 (H (W - 1) + W (H - 1))``.
    """

    h: int
    w: int
    nbr: torch.Tensor
    inward: torch.Tensor
    on_grid: torch.Tensor
    me: torch.Tensor
    target: torch.Tensor

    @property
    def n(self) -> int:
        return self.h * self.w

    @property
    def num_edges(self) -> int:
        return 2 * (self.h * (self.w - 1) + self.w * (self.h - 1))


def grid_index(grid: Sequence[int], n: int, device: torch.device | str | None = None) -> GridIndex:
    """The :class:`GridIndex` of ``grid`` (validated against ``n`` tokens) on ``device``."""
    h, w = grid_shape(n, grid)
    raw, on = _raw_neighbours(h, w, device)
    # opposite(d) = d ^ 1: LEFT <-> RIGHT, UP <-> DOWN; off-grid slots may point anywhere.
    inward = (raw * 4 + (torch.arange(4, device=device) ^ 1)).clamp(0, 4 * n - 1)
    return GridIndex(h, w, torch.where(on, raw, -1), inward, on,
                     torch.arange(n, device=device), torch.where(on, raw, n))


def neighbour_scores(
    a: torch.Tensor, grid: Sequence[int], index: GridIndex | None = None
) -> torch.Tensor:
    """Scores of each token towards its four neighbours.

    a: (B, N, N) row-stochastic distribution (or its logs) -> (B, N, 4) with
    ``a[b, i, nbr(i, d)]``, ``-inf`` where the neighbour is off the grid (so no threshold
    admits it). ``index``: the grid's tables, when the caller already built them.
    """
    gi = index if index is not None else grid_index(grid, a.shape[-1], a.device)
    s = a.gather(-1, gi.nbr.clamp_min(0).expand(a.shape[0], -1, -1))
    return s.masked_fill(~gi.on_grid, float("-inf"))


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


def _faithful_one(
    edges: list[list[bool]], nbr: list[list[int]], order: list[int] | None = None
) -> list[int]:
    """One image: Algorithms 1-2 with an explicit stack. Returns a label per token and,
    when ``order`` is given, appends the tokens to it in the order they are visited."""
    n = len(nbr)
    labels = [-1] * n
    nxt = [0] * n  # next neighbour slot to try, per token: the recursion's loop counter
    group = 0
    for root in range(n):
        if labels[root] >= 0:
            continue
        labels[root] = group
        if order is not None:
            order.append(root)
        stack = [root]
        while stack:
            i = stack[-1]
            d = nxt[i]
            if d == 4:
                stack.pop()
                continue
            nxt[i] = d + 1
            j = nbr[i][d]
            if j >= 0 and edges[i][d] and labels[j] < 0:
                labels[j] = group
                if order is not None:
                    order.append(j)
                stack.append(j)
        group += 1
    return labels


def faithful(edges: torch.Tensor, grid: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's sequential visit, one image at a time.

    edges: (B, N, 4) bool directed edges (:func:`directed_edges`)
    -> labels (B, N) long, counts (B,) long.
    """
    b, n, _ = edges.shape
    h, w = grid_shape(n, grid)
    # Plain Python lists: per-token torch indexing would cost microseconds per access.
    nbr = neighbours(h, w).tolist()
    rows = [_faithful_one(e, nbr) for e in edges.cpu().tolist()]
    labels = torch.tensor(rows, dtype=torch.long).view(b, n).to(edges.device)
    return labels, labels.amax(dim=1) + 1


def faithful_order(edges: torch.Tensor, grid: Sequence[int]) -> tuple[list[int], list[int]]:
    """The faithful visit of one image, step by step (for pictures of the flood fill).

    edges: (N, 4) bool -> (order, labels): tokens in the order the visit reaches them,
    and the final label of each token.
    """
    h, w = grid_shape(edges.shape[0], grid)
    order: list[int] = []
    labels = _faithful_one(edges.cpu().tolist(), neighbours(h, w).tolist(), order)
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


def reach_roots(edges: torch.Tensor, index: GridIndex) -> torch.Tensor:
    """Smallest token that reaches each token, by repeated squaring of the reachability
    matrix: a fixed number of matrix products, exact on any grid, no host sync.

    edges: (M, N, 4) bool -> (M, N) long. ``R = A + I`` (A: the directed adjacency) holds
    the paths of length <= 1; each ``R <- min(R @ R, 1)`` doubles that, so
    ``ceil(log2(N - 1))`` products (8 for 196 tokens) cover every simple path. The root of
    j is the first i with ``R[i, j] = 1``. Products of 0/1 matrices with entries <= N
    are exact in float32 (and in TF32 or half precision on an accelerator).
    The cost, ``2 N**3`` flops per product and image (0.12 GFLOP per image for a 14x14
    grid, under 0.4% of a DeiT-B forward), buys a labelling with no convergence check.
    """
    m, n, _ = edges.shape
    # Out of place throughout, so that torch.export (ONNX) sees a functional graph.
    a = torch.zeros(m, n, n + 1, device=edges.device)
    a = a.scatter(2, index.target.expand(m, n, 4), edges.float())
    r = torch.maximum(a[:, :, :n], torch.eye(n, device=edges.device))
    for _ in range(max(0, (n - 2).bit_length())):
        r = (r @ r).clamp_max(1.0)
    return r.argmax(dim=1)


def min_ancestors(edges: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Smallest token that reaches each token along directed grid edges, all images at once.

    edges: (B, N, 4) bool directed edges -> (B, N) long. Equals the faithful visit's roots
    (see the module docstring for why).
    """
    return reach_roots(edges, grid_index(grid, edges.shape[1], edges.device))


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
