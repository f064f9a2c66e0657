"""The parallel visit's labels: the smallest token that reaches each token, by rounds.

The faithful visit puts token j in the group of the smallest token that reaches j along
directed edges (proved in :mod:`tomato.core.visit`), so the parallel visit computes these
*minimum-ancestor* labels. A labelling starts with each token its own label; labels only
ever fall, and each stays an ancestor of its token, because a round takes

* **min-scans along straight runs of edges**, right then down, then (on the grid turned
  by 180 degrees, so every scan is a prefix scan) left then up: one scan carries the
  smallest label along a whole run of edges, so a round covers paths with few turns;
* two **pointer jumps**: my label's label is an ancestor of my ancestor, so mine too.

A labelling is exact once it is *closed*: no edge ``i -> j`` with ``lab[j] > lab[i]``.
(Induction along the path from j's smallest ancestor r: ``lab[r] <= r`` and labels never
rise along an edge, so ``lab[j] <= r``; and ``lab[j]`` is an ancestor, so ``>= r``.)
An unclosed labelling can only over-count the groups (a token may still think it is a
root). :func:`closed` checks it in a few operations with no host sync, so a caller can
read the flag in the sync it makes anyway, and only then :func:`settle` the rare rest.

On the trained DeiT-Ti's photos (160 Imagenette val photos) two rounds close 98% of the
labellings at the paper's ``sim = 1e-7`` and three all of them; budgets of 10 to 176
tokens need two to eight. Each round is 16 operations on (M, N) labels: no N x N tensor,
no matrix product.
"""
from __future__ import annotations

import torch

from .grid import DOWN, LEFT, RIGHT, UP, GridIndex

__all__ = ["ROUNDS", "Runs", "runs", "propagate", "listen", "closed", "settle", "min_ancestors"]

#: Rounds per call of :func:`propagate` unless told otherwise (and per step of :func:`settle`).
ROUNDS = 3
# Run offsets must exceed any label (N <= 2**20 tokens is far beyond any ViT grid).
_RUN = 1 << 20


class Runs:
    """Straight runs of edges, as offsets that keep a min-scan inside its run.

    right, down: (M, H, W) long for the scans on the grid as it is; left, up: the same for
    the grid turned by 180 degrees (``flip(1, 2)``), where those scans run forwards too.
    Each is a multiple of a constant larger than any label, constant along a run and
    growing in the scan's direction, so a prefix minimum of ``label - offset`` never
    reaches back into an earlier run.
    """

    def __init__(self, edges: torch.Tensor, h: int, w: int) -> None:
        m = edges.shape[0]
        cut = (~edges).view(m, h, w, 4).long() * _RUN  # a break in the run, per slot
        turned = cut.flip(1, 2)  # left and up are right and down on the turned grid
        # A forward scan breaks before c when c - 1 has no edge towards c: the offset at
        # c counts the breaks strictly before c.
        self.right = cut[..., RIGHT].cumsum(2) - cut[..., RIGHT]
        self.down = cut[..., DOWN].cumsum(1) - cut[..., DOWN]
        self.left = turned[..., LEFT].cumsum(2) - turned[..., LEFT]
        self.up = turned[..., UP].cumsum(1) - turned[..., UP]


def runs(edges: torch.Tensor, index: GridIndex) -> Runs:
    """edges: (M, N, 4) bool -> the :class:`Runs` of every image (a few ops, no loop)."""
    return Runs(edges, index.h, index.w)


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


def _scan(x: torch.Tensor, offset: torch.Tensor, dim: int) -> torch.Tensor:
    return _cummin(x - offset, dim) + offset


def _round(lab: torch.Tensor, r: Runs) -> torch.Tensor:
    """One round: scans right, down, (turned) left, up, then two pointer jumps.
    lab: (M, N) -> (M, N)."""
    m, n = lab.shape
    h, w = r.right.shape[1:]
    x = _scan(_scan(lab.view(m, h, w), r.right, 2), r.down, 1)
    x = _scan(_scan(x.flip(1, 2), r.left, 2), r.up, 1).flip(1, 2)
    lab = x.reshape(m, n)
    lab = lab.gather(1, lab)
    return lab.gather(1, lab)


def propagate(edges: torch.Tensor, index: GridIndex, rounds: int = ROUNDS,
              lab: torch.Tensor | None = None) -> torch.Tensor:
    """Minimum-ancestor labels after ``rounds`` rounds, no host sync (exact once
    :func:`closed`; otherwise an over-count).

    edges: (M, N, 4) bool directed edges (off-grid slots False); lab: (M, N) labels to go
    on from, each an ancestor of its token under these edges (default: each token itself)
    -> (M, N) long.
    """
    m, n, _ = edges.shape
    r = runs(edges, index)
    if lab is None:
        lab = index.me.expand(m, n)
    for _ in range(rounds):
        lab = _round(lab, r)
    return lab


def listen(edges: torch.Tensor, index: GridIndex, rounds: int) -> torch.Tensor:
    """Minimum-ancestor labels after ``rounds`` cheap rounds: each token takes the smallest
    label among itself and the neighbours with an edge towards it, then two pointer jumps.
    edges: (M, N, 4) bool (off-grid slots False) -> (M, N) long, exact once :func:`closed`.

    Four operations a round against :func:`propagate`'s sixteen, but a label moves one
    step (plus the jumps) instead of a whole run: the better choice where groups are small,
    as at a fixed ``sim`` on real photos (at the paper's sim, four rounds close 93% of the
    trained DeiT-Ti's labellings; budgets that merge most tokens need up to forty).
    """
    m, n, _ = edges.shape
    heard = edges.reshape(m, 4 * n)[:, index.inward] & index.on_grid  # (M, N, 4): i -> j
    src = torch.cat([torch.where(heard, index.nbr, index.me.view(n, 1)),
                     index.me.view(1, n, 1).expand(m, n, 1)], dim=2).view(m, 5 * n)
    lab = index.me.expand(m, n)
    for _ in range(rounds):
        lab = lab.gather(1, src).view(m, n, 5).amin(2)
        lab = lab.gather(1, lab)
        lab = lab.gather(1, lab)
    return lab


def closed(edges: torch.Tensor, index: GridIndex, lab: torch.Tensor) -> torch.Tensor:
    """Whether each labelling is exact: no edge ``i -> j`` with ``lab[j] > lab[i]``.

    edges: (M, N, 4) bool, lab: (M, N) from :func:`propagate` -> (M,) bool, no host sync.
    """
    m, n = lab.shape
    towards = lab.gather(1, index.safe.view(1, 4 * n).expand(m, 4 * n)).view(m, n, 4)
    return ~(edges & (towards > lab.unsqueeze(2))).flatten(1).any(1)


def settle(edges: torch.Tensor, index: GridIndex, lab: torch.Tensor, done: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Finish labellings that :func:`propagate` left unclosed: more rounds, one host sync
    per :data:`ROUNDS` rounds, until every one is closed. ``done``: their
    :func:`closed` flags when the caller has them."""
    if done is None:
        done = closed(edges, index, lab)
    while not bool(done.all()):
        lab = propagate(edges, index, ROUNDS, lab)
        done = closed(edges, index, lab)
    return lab


def min_ancestors(edges: torch.Tensor, index: GridIndex) -> torch.Tensor:
    """edges: (M, N, 4) bool -> (M, N) long, the smallest token reaching each token, exact
    (:func:`propagate` then :func:`settle`)."""
    return settle(edges, index, propagate(edges, index))
