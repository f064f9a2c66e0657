"""The patch grid: its shape, each token's four neighbours, and their index tables.

Patch tokens are indexed row-major on an ``H x W`` grid (``i = row * W + col``). Each
token has up to four neighbours, always tried in the order LEFT, RIGHT, UP, DOWN (the
paper's visit order). Every later stage indexes through one :class:`GridIndex`, built
once per forward on the tokens' device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["LEFT", "RIGHT", "UP", "DOWN", "grid_shape", "neighbours", "GridIndex", "grid_index"]

LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3


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
    """Index tables of an ``H x W`` grid, on the tokens' device.

    nbr: (N, 4) neighbour of each token (LEFT, RIGHT, UP, DOWN), -1 off the grid;
    safe: (N, 4) the same with 0 off the grid (an index that gathers without error: the
    value it fetches is masked by ``on_grid``); on_grid / off_grid: (N, 4) bool;
    inward: (N, 4) for token j and slot d, the flat index ``i * 4 + opposite(d)`` into
    (N, 4) edges of the edge from ``i = nbr[j, d]`` towards j (0 off the grid);
    me: (N,) ``arange(N)``; num_edges: directed grid edges, ``2 (H (W - 1) + W (H - 1))``.
    """

    h: int
    w: int
    nbr: torch.Tensor
    safe: torch.Tensor
    on_grid: torch.Tensor
    off_grid: torch.Tensor
    inward: torch.Tensor
    me: torch.Tensor

    @property
    def n(self) -> int:
        return self.h * self.w

    @property
    def num_edges(self) -> int:
        return 2 * (self.h * (self.w - 1) + self.w * (self.h - 1))


def grid_index(grid: Sequence[int] | None, n: int, device: torch.device | str | None = None) -> GridIndex:
    """The :class:`GridIndex` of ``grid`` (validated against ``n`` tokens) on ``device``."""
    h, w = grid_shape(n, grid)
    raw, on = _raw_neighbours(h, w, device)
    safe = torch.where(on, raw, 0)
    # opposite(d) = d ^ 1: LEFT <-> RIGHT, UP <-> DOWN.
    inward = torch.where(on, safe * 4 + (torch.arange(4, device=device) ^ 1), 0)
    return GridIndex(h, w, torch.where(on, raw, -1), safe, on, ~on, inward, torch.arange(n, device=device))
