"""Small hand-made grids drawn cell by cell: the faithful visit frame by frame
(Algorithms 1-2 of the paper) and several partitions of one grid side by side.

matplotlib is imported inside the functions that need it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..core import visit
from .pictures import changed_tokens, outline_tokens

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _arrow(ax: Axes, i: int, j: int, w: int, colour: str) -> None:
    """Arrow for the directed edge i -> j between grid cells, shifted sideways so that
    i -> j and j -> i do not overlap."""
    (ri, ci), (rj, cj) = divmod(i, w), divmod(j, w)
    dx, dy = cj - ci, rj - ri
    sx, sy = -dy * 0.12, dx * 0.12  # perpendicular shift
    ax.annotate("", xy=(cj - dx * 0.28 + sx, rj - dy * 0.28 + sy),
                xytext=(ci + dx * 0.28 + sx, ri + dy * 0.28 + sy),
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.3, mutation_scale=10))


def _cell_colours() -> np.ndarray:
    """20 distinct light colours for small grids (tab20 blended halfway with white)."""
    from matplotlib import colormaps

    order = [*range(0, 20, 2), *range(1, 20, 2)]  # strong hues first, their light twins after
    return 0.5 * colormaps["tab20"](order)[:, :3] + 0.5


def _draw_grid_state(
    ax: Axes,
    grid: Sequence[int],
    labels: Sequence[int],
    step_of: Mapping[int, int],
    edges: np.ndarray | None,
    current: int | None,
    colours: np.ndarray,
    numbers: bool = True,
) -> None:
    """Cells coloured by group (all of them when ``numbers`` is False, else only those in
    ``step_of``, labelled with their visit step), token indices, edges as arrows."""
    from matplotlib.patches import Rectangle

    h, w = int(grid[0]), int(grid[1])
    for i in range(h * w):
        r, c = divmod(i, w)
        seen = i in step_of or not numbers
        face = colours[labels[i] % len(colours)] if seen else (1, 1, 1)
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=face, edgecolor="0.6", lw=0.8))
        ax.text(c - 0.42, r - 0.42, str(i), fontsize=6, color="0.35", va="top", ha="left")
        if seen and numbers:
            ax.text(c, r + 0.12, f"#{step_of[i] + 1}", fontsize=8, ha="center", va="center",
                    fontweight="bold")
    if edges is not None:
        nbr = visit.neighbours(h, w).tolist()
        for i in range(h * w):
            for d in range(4):
                if edges[i][d] and nbr[i][d] >= 0:
                    _arrow(ax, i, nbr[i][d], w, "0.15")
    if current is not None:
        r, c = divmod(current, w)
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def flood_fill_frames(
    order: Sequence[int],
    labels: Sequence[int],
    grid: Sequence[int],
    n_frames: int = 8,
    edges: np.ndarray | torch.Tensor | None = None,
    cols: int = 4,
    title: str = "",
) -> Figure:
    """A strip of frames of the faithful visit (Algorithms 1-2) on a small grid.

    order, labels: from :func:`tomato.core.visit.faithful_order` (tokens in visit order, and
    each token's final group); edges: optional (N, 4) bool directed edges, drawn as
    arrows i -> j. Frame k shows the tokens visited so far coloured by group, each with
    its visit step ``#s``; the token just entered is outlined in red.
    """
    import matplotlib.pyplot as plt

    n = len(order)
    n_frames = max(1, min(n_frames, n))
    steps = sorted({max(1, round(k * n / n_frames)) for k in range(1, n_frames + 1)})
    e = None if edges is None else np.asarray(torch.as_tensor(edges).cpu()).tolist()
    colours = _cell_colours()
    rows = math.ceil(len(steps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.8 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, steps):
        ax.axis("on")
        step_of = {t: k for k, t in enumerate(order[:s])}
        _draw_grid_state(ax, grid, labels, step_of, e, order[s - 1], colours)
        cur = order[s - 1]
        groups = len({labels[t] for t in order[:s]})
        ax.set_title(f"step {s}: token {cur} (group {labels[cur]}), {groups} group(s)", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def partition_panels(
    grid: Sequence[int],
    partitions: Mapping[str, Sequence[int] | torch.Tensor],
    edges: np.ndarray | torch.Tensor | Mapping[str, np.ndarray | torch.Tensor] | None = None,
    reference: str | None = None,
    title: str = "",
) -> Figure:
    """Several groupings of the same small grid side by side, cells coloured by group.

    partitions: name -> (N,) labels; edges: optional (N, 4) bool directed edges drawn as
    arrows, one set for all panels or a mapping name -> edges of that panel;
    reference: name of the partition the others are compared with (cells whose group
    differs from it are outlined in red).
    """
    import matplotlib.pyplot as plt

    n = int(grid[0]) * int(grid[1])

    def as_list(e: Any) -> list | None:
        return None if e is None else np.asarray(torch.as_tensor(e).cpu()).tolist()

    colours = _cell_colours()
    fig, axes = plt.subplots(1, len(partitions), figsize=(2.5 * len(partitions), 2.9), squeeze=False,
                             layout="constrained")
    ref = None if reference is None else np.asarray(torch.as_tensor(partitions[reference]).cpu())
    for ax, (name, lab) in zip(axes.flat, partitions.items()):
        labels = [int(v) for v in torch.as_tensor(lab).cpu().tolist()]
        e = as_list(edges.get(name) if isinstance(edges, Mapping) else edges)
        _draw_grid_state(ax, grid, labels, {}, e, None, colours, numbers=False)
        if ref is not None and name != reference:
            outline_tokens(ax, changed_tokens(ref, np.asarray(labels)), grid, (1.0, 1.0), width=2.5)
        ax.set_title(f"{name}:\n{len(set(labels))} groups of {n}", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig

