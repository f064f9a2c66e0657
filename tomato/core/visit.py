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
    labels are "minimum ancestor" labels: min-label propagation along directed edges,
    with pointer jumping (the label of my label is also my ancestor), until nothing changes.

    ``rule="either"`` / ``rule="both"``: symmetrised alternatives that join neighbours
    when ``A[i, j] >= sim`` or / and ``A[j, i] >= sim`` and take connected components
    (min-label propagation with hooking and pointer jumping). Order-free by design; the
    faithful groups are unions of "both"-components and subsets of "either"-components,
    and all three rules agree where the directed edges are symmetric.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

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


def neighbours(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Neighbour index table: (N, 4) in LEFT, RIGHT, UP, DOWN order, -1 off the grid."""
    idx = torch.arange(h * w, device=device).view(h, w)
    out = torch.full((h, w, 4), -1, dtype=torch.long, device=device)
    out[:, 1:, LEFT] = idx[:, :-1]
    out[:, :-1, RIGHT] = idx[:, 1:]
    out[1:, :, UP] = idx[:-1, :]
    out[:-1, :, DOWN] = idx[1:, :]
    return out.view(h * w, 4)


def neighbour_scores(a: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Scores of each token towards its four neighbours.

    a: (B, N, N) row-stochastic distribution -> (B, N, 4) with ``a[b, i, nbr(i, d)]``,
    ``-inf`` where the neighbour is off the grid (so no threshold >= 0 admits it).
    """
    h, w = grid_shape(a.shape[-1], grid)
    nbr = neighbours(h, w, a.device)
    s = a.gather(-1, nbr.clamp_min(0).expand(a.shape[0], -1, -1))
    return s.masked_fill(nbr < 0, float("-inf"))


def directed_edges(
    scores: torch.Tensor, sim: float | torch.Tensor, *, log: bool = False
) -> torch.Tensor:
    """scores: (B, N, 4), sim: scalar or (B,) -> (B, N, 4) bool, edge i -> nbr when >= sim.

    With ``log=True`` both ``scores`` and ``sim`` are natural logs (``sim = -inf`` joins
    every neighbour, ``+inf`` none); off-grid entries (``-inf``) never pass.
    """
    sim_t = torch.as_tensor(sim, dtype=torch.float64, device=scores.device)
    if log:
        if torch.isnan(sim_t).any():
            raise ValueError("log sim is NaN")
    else:
        check_sim(sim_t)
    sim_t = sim_t.to(scores.dtype)
    if sim_t.ndim == 1:
        sim_t = sim_t.view(-1, 1, 1)
    edges = scores >= sim_t
    return edges & (scores > float("-inf")) if log else edges


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


def min_ancestors(edges: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Smallest token that reaches each token along directed grid edges, all images at once.

    edges: (B, N, 4) bool directed edges -> (B, N) long. Equals the faithful visit's roots
    (see the module docstring for why).
    """
    b, n, _ = edges.shape
    h, w = grid_shape(n, grid)
    e = edges.view(b, h, w, 4)
    # Which token each one hears from: a label flows along i -> j, from i to j.
    from_left = e[:, :, :-1, RIGHT]   # (r, c) -> (r, c+1)
    from_right = e[:, :, 1:, LEFT]    # (r, c+1) -> (r, c)
    from_above = e[:, :-1, :, DOWN]   # (r, c) -> (r+1, c)
    from_below = e[:, 1:, :, UP]      # (r+1, c) -> (r, c)
    lab = torch.arange(n, device=edges.device).view(1, h, w).expand(b, h, w).clone()
    big = torch.tensor(n, device=lab.device)
    while True:
        m = lab.clone()
        m[:, :, 1:] = torch.minimum(m[:, :, 1:], torch.where(from_left, lab[:, :, :-1], big))
        m[:, :, :-1] = torch.minimum(m[:, :, :-1], torch.where(from_right, lab[:, :, 1:], big))
        m[:, 1:, :] = torch.minimum(m[:, 1:, :], torch.where(from_above, lab[:, :-1, :], big))
        m[:, :-1, :] = torch.minimum(m[:, :-1, :], torch.where(from_below, lab[:, 1:, :], big))
        # Pointer jumping: my label's label is an ancestor of my ancestor, so mine too.
        flat = m.view(b, n)
        flat = flat.gather(1, flat)
        flat = flat.gather(1, flat)
        if torch.equal(flat, lab.view(b, n)):
            return flat
        lab = flat.view(b, h, w)


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
