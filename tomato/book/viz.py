"""Pictures and small tables for the walk-through notebooks.

Everything a notebook draws that is more than a few lines lives here, so the notebooks
stay thin. Conventions:

- patch tokens are indexed row-major on a ``grid = (h, w)`` patch grid (``i = r * w + c``);
- an *image* for display is a float array ``(H, W, 3)`` in ``[0, 1]``
  (:func:`to_display` turns a model input back into one);
- functions that draw on an existing axes take it as their first argument; functions
  that make a whole figure return it (the caller shows it);
- matplotlib, pandas and ipywidgets are imported inside the functions that need them,
  so ``import tomato`` never pulls in a plotting stack. No printing, no global state.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..core import budget, similarity, visit
from .paper import TOKEN_CUT_SIM_1E7

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import nn

    from ..core.probe import Block0

__all__ = [
    "PAPER_SIMS",
    "agreement_summary",
    "asymmetry_scatter",
    "changed_tokens",
    "edge_agreement_table",
    "flood_fill_frames",
    "group_picture",
    "keep_slider",
    "labels_from_tome_source",
    "log10_distribution",
    "merge_picture",
    "metric_budget_agreement",
    "model_title",
    "outline_tokens",
    "partition_panels",
    "picture_grid",
    "score_histogram",
    "sim_slider",
    "size_histogram",
    "to_display",
    "token_cut_plot",
    "token_map",
    "tokens_per_block_plot",
]

#: The thresholds the paper and its reference profiling runs used.
PAPER_SIMS: tuple[float, ...] = (1e-2, 1e-3, 5e-4, 1e-7, 1e-20)


_FAMILIES = {"deit": "DeiT", "vit": "ViT"}
_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}


def model_title(model_name: str, pretrained: bool) -> str:
    """Short name for figure titles: ``("deit_base_patch16_224", False)`` ->
    ``"random-init DeiT-B"``; names it does not know are kept as they are."""
    parts = model_name.split(".")[0].split("_")
    short = model_name
    if len(parts) >= 2 and parts[0] in _FAMILIES and parts[1] in _SIZES:
        short = f"{_FAMILIES[parts[0]]}-{_SIZES[parts[1]]}"
        if "distilled" in parts:
            short += " (distilled)"
    return short if pretrained else f"random-init {short}"


# --------------------------------------------------------------------------- images
def to_display(image: torch.Tensor, model: nn.Module) -> np.ndarray:
    """Undo the model's input normalisation for display.

    image: (3, H, W) normalised tensor -> (H, W, 3) float array clipped to [0, 1],
    using the mean/std of ``timm.data.resolve_model_data_config(model)``.
    """
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(3, 1, 1)
    x = image.detach().cpu().float() * std + mean
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def _pixel_labels(labels: np.ndarray, grid: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """(N,) token labels -> (H, W) label per pixel (each token covers one patch)."""
    h, w = int(grid[0]), int(grid[1])
    height, width = int(shape[0]), int(shape[1])
    if height % h or width % w:
        raise ValueError(f"image {height}x{width} is not a whole number of {h}x{w} patches")
    lab = np.asarray(labels).reshape(h, w)
    return np.repeat(np.repeat(lab, height // h, axis=0), width // w, axis=1)


def _boundaries(pix: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W) bool, True on both sides of every change of label."""
    edge = np.zeros(pix.shape, dtype=bool)
    dx = pix[:, 1:] != pix[:, :-1]
    dy = pix[1:, :] != pix[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


def merge_picture(
    image: np.ndarray,
    labels: np.ndarray | torch.Tensor,
    grid: Sequence[int],
    boundary: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """What the merged tokens "see", as in ToMe's visualisation (the paper's Figure 2).

    image: (H, W, 3) in [0, 1]; labels: (N,) group of each patch token, N = h * w.
    Returns (H, W, 3): every pixel painted with the mean colour of its group, and the
    pixels on either side of a border between two *different* groups painted ``boundary``.
    """
    img = np.asarray(image, dtype=np.float64)
    lab = np.asarray(torch.as_tensor(labels).cpu())
    pix = _pixel_labels(lab, grid, img.shape)
    _, inv = np.unique(pix, return_inverse=True)
    inv = inv.reshape(pix.shape)
    count = np.bincount(inv.ravel()).astype(np.float64)
    out = np.empty_like(img)
    for ch in range(3):
        mean = np.bincount(inv.ravel(), weights=img[..., ch].ravel()) / count
        out[..., ch] = mean[inv]
    out[_boundaries(pix)] = np.asarray(boundary, dtype=np.float64)
    return out


def group_picture(
    image: np.ndarray,
    labels: np.ndarray | torch.Tensor,
    grid: Sequence[int],
    alpha: float = 0.55,
    boundary: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """The photo with every multi-patch group tinted in its own colour (a label map).

    image: (H, W, 3) in [0, 1]; labels: (N,). Groups of one patch keep the photo; the
    borders of multi-patch groups are painted ``boundary``. Returns (H, W, 3).
    """
    from matplotlib import colormaps

    img = np.asarray(image, dtype=np.float64)
    lab = np.asarray(torch.as_tensor(labels).cpu())
    uniq, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
    palette = colormaps["tab20"](np.arange(20))[:, :3]
    # Colour multi-patch groups only, cycling the palette in root order.
    colour_of = np.full((len(uniq), 3), np.nan)
    multi = np.flatnonzero(counts > 1)
    colour_of[multi] = palette[np.arange(len(multi)) % len(palette)]
    pix = _pixel_labels(inv.reshape(-1), grid, img.shape)
    tint = colour_of[pix]
    out = img.copy()
    has = ~np.isnan(tint[..., 0])
    out[has] = (1 - alpha) * img[has] + alpha * tint[has]
    # Borders around multi-patch groups only: all singletons share one label here, so
    # no grid of lines is drawn between two unmerged patches.
    outline = np.where(counts[inv] > 1, inv, -1).reshape(-1)
    out[_boundaries(_pixel_labels(outline, grid, img.shape))] = np.asarray(boundary, dtype=np.float64)
    return out


def labels_from_tome_source(source: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """ToMe's source map -> a group label per input patch token.

    source: (B, T_out, T_in) 0/1, ``source[b, o, i] = 1`` when output token o contains
    input token i (``tomato.core.patch.state(model).source`` with ``trace_source=True``).
    Returns (B, N) long, N = T_in - num_prefix_tokens, numbered 0..G-1 in the order of
    each group's smallest patch index (the same convention as ToMato's labels).
    """
    p = num_prefix_tokens
    raw = source[:, :, p:].float().argmax(dim=1)  # (B, N): output token holding patch i
    b, n = raw.shape
    idx = torch.arange(n, device=raw.device).expand(b, n)
    roots = torch.full((b, source.shape[1]), n, dtype=torch.long, device=raw.device)
    roots = roots.scatter_reduce(1, raw, idx, reduce="amin")
    labels, _ = visit.relabel_by_root(roots.gather(1, raw))
    return labels


def changed_tokens(reference: np.ndarray | torch.Tensor, other: np.ndarray | torch.Tensor) -> np.ndarray:
    """Tokens whose group differs between two partitions of the same N tokens.

    reference, other: (N,) labels -> (N,) bool, True where the set of tokens sharing a
    group with token i is not the same in both (label values themselves do not matter).
    """
    a = np.asarray(torch.as_tensor(reference).cpu()).reshape(-1)
    b = np.asarray(torch.as_tensor(other).cpu()).reshape(-1)
    # Token i keeps its group iff its a-group and b-group are the same set, i.e. the
    # (a, b) label pair of i covers the whole a-group and the whole b-group.
    pair = a.astype(np.int64) * (int(b.max()) + 1) + b
    _, pinv, pcount = np.unique(pair, return_inverse=True, return_counts=True)
    _, ainv, acount = np.unique(a, return_inverse=True, return_counts=True)
    _, binv, bcount = np.unique(b, return_inverse=True, return_counts=True)
    same = (pcount[pinv] == acount[ainv]) & (pcount[pinv] == bcount[binv])
    return ~same


# --------------------------------------------------------------------------- drawing
def token_map(
    ax: Axes,
    values: np.ndarray | torch.Tensor,
    grid: Sequence[int],
    image: np.ndarray | None = None,
    log: bool = False,
    cmap: str = "viridis",
    alpha: float = 0.7,
    label: str = "",
    mark: int | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Any:
    """Draw one value per patch token as a heat map, with a colourbar.

    values: (N,) on the (h, w) grid; image: optional (H, W, 3) photo drawn underneath
    (the map is then stretched over it, with ``alpha``); ``log``: show log10(values)
    (values are then expected > 0; zeros show as the colourbar's minimum);
    ``mark``: a token index to outline. Returns the matplotlib image of the map.
    """
    h, w = int(grid[0]), int(grid[1])
    v = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64).reshape(h, w)
    if log:
        with np.errstate(divide="ignore"):
            v = np.log10(v)
        finite = v[np.isfinite(v)]
        v = np.where(np.isfinite(v), v, finite.min() if finite.size else 0.0)
    if image is not None:
        height, width = image.shape[:2]
        ax.imshow(image)
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)
        im = ax.imshow(v, cmap=cmap, alpha=alpha, extent=extent, interpolation="nearest",
                       vmin=vmin, vmax=vmax)
        cell = (height / h, width / w)
    else:
        im = ax.imshow(v, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
        cell = (1.0, 1.0)
    if mark is not None:
        outline_tokens(ax, np.arange(h * w) == mark, grid, cell, colour="red", width=2.0,
                       offset=0.0 if image is not None else -0.5)
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(label)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def outline_tokens(
    ax: Axes,
    mask: np.ndarray | torch.Tensor,
    grid: Sequence[int],
    cell: Sequence[float] = (16.0, 16.0),
    colour: str = "red",
    width: float = 1.5,
    offset: float = -0.5,
) -> None:
    """Draw a rectangle around each patch token where ``mask`` (N,) is True.

    cell: (height, width) of one patch in data coordinates (16 px for a 224 image on a
    14x14 grid, 1 for a grid drawn cell by cell); offset: where patch 0 starts.
    """
    from matplotlib.patches import Rectangle

    w = int(grid[1])
    for i in np.flatnonzero(np.asarray(torch.as_tensor(mask).cpu()).reshape(-1)):
        r, c = divmod(int(i), w)
        ax.add_patch(Rectangle((c * cell[1] + offset, r * cell[0] + offset), cell[1], cell[0],
                               fill=False, edgecolor=colour, linewidth=width))


def picture_grid(
    pictures: Sequence[np.ndarray],
    titles: Sequence[str],
    cols: int = 3,
    suptitle: str = "",
    size: float = 3.0,
    outlines: Sequence[np.ndarray | None] | None = None,
    grid: Sequence[int] | None = None,
) -> Figure:
    """A grid of (H, W, 3) pictures with titles; returns the figure.

    outlines: optional (N,) bool mask per picture whose patches get a red outline
    (needs ``grid``; patch size is inferred from the picture).
    """
    import matplotlib.pyplot as plt

    n = len(pictures)
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, (size + 0.45) * rows + (0.5 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(pictures[k])
        ax.set_title(titles[k], fontsize=9)
        mask = outlines[k] if outlines is not None else None
        if mask is not None and grid is not None:
            ph = pictures[k].shape[0] / int(grid[0])
            pw = pictures[k].shape[1] / int(grid[1])
            outline_tokens(ax, mask, grid, (ph, pw), colour="red", width=1.5)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _symlog_bins(lo: float, n: int = 60) -> np.ndarray:
    """Bin edges from ``lo`` (< -1) to 0, geometric in |x| below -1 and linear above."""
    lo = min(lo, -1.5)
    return np.concatenate([-np.geomspace(-lo, 1.0, n), np.linspace(-1.0, 0.0, 6)[1:]])


def score_histogram(
    axes: Sequence[Axes],
    log10_scores: Mapping[str, np.ndarray | torch.Tensor],
    thresholds: Sequence[float] = PAPER_SIMS,
    symlog: Mapping[str, bool] | None = None,
    focus: float = 1e-7,
) -> None:
    """One histogram per metric of log10 neighbour scores, with thresholds marked.

    axes: one axes per metric; log10_scores: name -> log10 of the 4-neighbour scores
    (any shape; ``-inf`` entries, i.e. off-grid neighbours, are dropped);
    symlog: per metric, whether to spread the x axis logarithmically in the magnitude of log10(score)
    (use it when scores span hundreds of decades, as the ``features`` metric does);
    focus: the threshold whose pass rate the panel titles report.
    """
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    for ax, (name, vals) in zip(axes, log10_scores.items()):
        v = np.asarray(torch.as_tensor(vals).detach().cpu(), dtype=np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        spread = (symlog or {}).get(name, False)
        if spread:
            ax.hist(v, bins=_symlog_bins(float(v.min())), color="0.55")
            ax.set_xscale("symlog", linthresh=1.0)
        else:
            ax.hist(v, bins=40, color="0.55")
        for k, t in enumerate(thresholds):
            ax.axvline(math.log10(t), color=colours(k), linestyle="--", linewidth=1.3,
                       label=f"sim = {t:g}")
        ax.set_yscale("log")
        ax.set_xlabel("log10 A[i, j]   (j a grid neighbour of i)")
        ax.set_ylabel("directed neighbour edges")
        ax.set_title(f"{name}: {np.mean(v >= math.log10(focus)):.1%} of {v.size} edges pass sim={focus:g}\n"
                     f"scores from 1e{v.min():.3g} to 1e{v.max():.2g}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")


def asymmetry_scatter(
    ax: Axes,
    log10_scores: np.ndarray | torch.Tensor,
    grid: Sequence[int],
    sim: float = 1e-7,
    symlog: bool = True,
) -> tuple[float, float]:
    """Scatter log10 A[i, j] against log10 A[j, i] for every neighbour pair.

    log10_scores: (..., N, 4) log10 neighbour scores in LEFT, RIGHT, UP, DOWN order
    (:func:`tomato.core.visit.neighbour_scores` of :func:`log10_distribution`).
    Each unordered pair {i, j} is drawn once (i its left/upper token); pairs where only
    one direction passes ``sim`` are drawn in red. Returns the share of such pairs among
    all pairs, and among the pairs where at least one direction passes.
    """
    s = torch.as_tensor(log10_scores).detach().cpu().double()
    h, w = int(grid[0]), int(grid[1])
    e = s.reshape(-1, h, w, 4)
    fwd = torch.cat([e[:, :, :-1, visit.RIGHT].reshape(-1), e[:, :-1, :, visit.DOWN].reshape(-1)])
    bwd = torch.cat([e[:, :, 1:, visit.LEFT].reshape(-1), e[:, 1:, :, visit.UP].reshape(-1)])
    x, y = fwd.numpy(), bwd.numpy()
    t = math.log10(sim)
    one_way = (x >= t) != (y >= t)
    ax.scatter(x[~one_way], y[~one_way], s=5, alpha=0.35, color="0.3", label="same decision both ways")
    ax.scatter(x[one_way], y[one_way], s=9, alpha=0.8, color="tab:red",
               label=f"only one direction passes sim={sim:g}")
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="tab:blue", linewidth=1, label="A[i, j] = A[j, i]")
    if symlog:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
        lim = (lo * 1.3, 0.3)
    else:
        pad = 0.05 * max(hi - lo, 1e-6)
        lim = (lo - pad, hi + pad)
    if lim[0] <= t <= lim[1]:
        ax.axvline(t, color="0.5", linestyle=":", linewidth=1)
        ax.axhline(t, color="0.5", linestyle=":", linewidth=1)
    else:
        ax.text(0.98, 0.02, f"sim={sim:g} (log10 = {t:g}) is off this scale", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("log10 A[i, j]  (i left of / above j)")
    ax.set_ylabel("log10 A[j, i]")
    ax.legend(fontsize=7, loc="upper left")
    any_pass = (x >= t) | (y >= t)
    share_all = float(one_way.mean()) if one_way.size else 0.0
    share_passing = float(one_way[any_pass].mean()) if any_pass.any() else 0.0
    return share_all, share_passing


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


def tokens_per_block_plot(
    ax: Axes,
    curves: Mapping[str, Sequence[float]],
    input_tokens: int,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Tokens entering each block, and reaching the head (the paper's Figure 1).

    curves: name -> token count leaving blocks 0..L-1 (e.g.
    ``tomato.core.patch.state(model).tokens_per_block``); input_tokens: count entering block 0.
    Drawn as steps: the segment over block k is the count entering block k.
    """
    depth = 0
    for name, counts in curves.items():
        y = [input_tokens, *counts]
        depth = max(depth, len(counts))
        ax.step(range(len(y) + 1), [*y, y[-1]], where="post", label=name,
                **dict((styles or {}).get(name, {})))
    ax.set_xticks(np.arange(depth + 1) + 0.5, [*map(str, range(depth)), "head"])
    ax.set_xlim(0, depth + 1)
    ax.set_xlabel("block")
    ax.set_ylabel("tokens entering (incl. class token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)


def token_cut_plot(
    ax: Axes,
    recorded: np.ndarray | None,
    live: np.ndarray,
    paper_range: tuple[float, float] = TOKEN_CUT_SIM_1E7,
    tome_cut: float | None = 15.0,
    recorded_label: str = "recorded run",
    live_label: str = "smoke photos (live)",
) -> None:
    """Per-image share of patch tokens removed (%), against the paper's reported range.

    recorded: (M,) % cut per image of a recorded run (histogram), or None;
    live: (K,) % cut per image computed in the notebook (markers on the axis).
    """
    ax.axvspan(*paper_range, color="tab:green", alpha=0.15,
               label=f"paper, pretrained DeiT-B: {paper_range[0]}%-{paper_range[1]}%")
    if tome_cut is not None:
        ax.axvline(tome_cut, color="tab:purple", linestyle="--", label=f"paper: ToMe r=2 ≈ {tome_cut:g}%")
    if recorded is not None and len(recorded):
        rec = np.asarray(recorded, dtype=np.float64)
        hi = max(float(rec.max()), float(np.max(live)) if len(live) else 0.0, paper_range[1]) + 2
        ax.hist(rec, bins=np.arange(0, hi + 1, 1.0), color="0.55", label=recorded_label)
    live = np.asarray(live, dtype=np.float64)
    y0 = ax.get_ylim()[1] if recorded is not None and len(recorded) else 1.0
    ax.plot(live, np.full(live.shape, 0.0), "v", color="tab:orange", markersize=9, clip_on=False,
            label=live_label, zorder=5)
    if recorded is None or not len(recorded):
        ax.set_ylim(-0.2, y0)
        ax.set_yticks([])
    ax.set_xlabel("patch tokens removed after block 0 (% of 196)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)


def size_histogram(ax: Axes, sizes: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """How many patches each merged token stands for, in power-of-two bins.

    sizes: name -> sizes of the patch tokens, any shape (zeros, i.e. padding, are
    dropped). Grouped bars per bin (1, 2, 3-4, 5-8, ...), log count axis.
    """
    all_sizes = {k: np.asarray(torch.as_tensor(v).detach().cpu()).reshape(-1) for k, v in sizes.items()}
    top = max(float(v.max()) for v in all_sizes.values() if v.size)
    edges = [0.5, 1.5]
    while edges[-1] < top:
        edges.append(2 * edges[-1] - 0.5 if edges[-1] > 1.5 else 2.5)
    edges = np.array(edges)
    labels = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        a, b = int(math.ceil(lo)), int(math.floor(hi))
        labels.append(str(a) if a == b else f"{a}-{b}")
    width = 0.8 / max(1, len(all_sizes))
    pos = np.arange(len(labels))
    for k, (name, v) in enumerate(all_sizes.items()):
        v = v[v > 0]
        counts, _ = np.histogram(v, bins=edges)
        ax.bar(pos + (k - (len(all_sizes) - 1) / 2) * width, counts, width=width,
               label=f"{name}: {v.size} tokens")
    ax.set_xticks(pos, labels)
    ax.set_yscale("log")
    ax.set_xlabel("patches per token (token size)")
    ax.set_ylabel("tokens")
    ax.legend(fontsize=8)


# --------------------------------------------------------------------------- numbers
def log10_distribution(b0: Block0, metric: str = "features") -> torch.Tensor:
    """log10 of the attention distribution, as the merge step compares it.

    b0: :func:`tomato.core.probe.block0` output -> (B, N, N) float64, i.e.
    :func:`tomato.core.similarity.log_distribution` / ln 10. The merge step tests thresholds
    in the log domain, so entries far below float32's smallest number (~1e-45, where the
    probabilities themselves are exactly 0) keep their true size and order.
    """
    log_a = similarity.log_distribution(metric, b0.x, b0.num_prefix_tokens, b0.attn)
    return log_a.double() / math.log(10.0)


def edge_agreement_table(
    scores: Mapping[str, torch.Tensor],
    grid: Sequence[int],
    sims: Sequence[float] = PAPER_SIMS,
) -> pd.DataFrame:
    """How many directed neighbour edges pass each threshold under two metrics, and
    how often the two metrics make the same decision.

    scores: exactly two entries, metric name -> (B, N, 4) natural-log neighbour scores
    (:func:`tomato.core.visit.neighbour_scores` of :func:`tomato.core.similarity.log_distribution`;
    thresholds are tested in the log domain, as the merge step does). One row per sim:
    % of edges passing under
    each metric, % of edges where both metrics decide alike, the Jaccard overlap of the
    passing edge sets, and the mean patch tokens the faithful visit keeps under each.
    """
    import pandas as pd

    (na, sa), (nb, sb) = scores.items()
    valid = torch.isfinite(sa) & torch.isfinite(sb)
    rows = []
    for sim in sims:
        log_sim = math.log(sim) if sim > 0 else -math.inf
        ea = visit.directed_edges(sa, log_sim, log=True)
        eb = visit.directed_edges(sb, log_sim, log=True)
        pa, pb = ea[valid], eb[valid]
        union = int((pa | pb).sum())
        rows.append({
            "sim": f"{sim:.3g}",
            f"edges passing, {na} (%)": 100 * float(pa.double().mean()),
            f"edges passing, {nb} (%)": 100 * float(pb.double().mean()),
            "same decision (%)": 100 * float((pa == pb).double().mean()),
            "Jaccard of passing edges": float((pa & pb).sum()) / union if union else float("nan"),
            f"tokens kept, {na}": float(visit.faithful(ea, grid)[1].double().mean()),
            f"tokens kept, {nb}": float(visit.faithful(eb, grid)[1].double().mean()),
        })
    return pd.DataFrame(rows).set_index("sim")


def metric_budget_agreement(
    scores: Mapping[str, torch.Tensor],
    grid: Sequence[int],
    keep_ratios: Sequence[float] = (0.9, 0.75, 0.5),
) -> pd.DataFrame:
    """Compare two metrics at equal token budgets instead of equal thresholds.

    scores: exactly two entries, metric name -> (B, N, 4) natural-log neighbour scores.
    For each keep ratio, each metric's ``sim`` is chosen per image by the budget search
    (faithful visit); one row per keep ratio with the mean tokens kept under each metric,
    the mean adjusted Rand index of the two partitions, and the % of images where they
    are identical.
    """
    import pandas as pd

    from ..harness.agreement import adjusted_rand_index

    (na, sa), (nb, sb) = scores.items()
    n = sa.shape[1]
    rows = []
    for rho in keep_ratios:
        k = budget.budget_tokens(n, keep_ratio=rho)
        out = {}
        for name, sc in ((na, sa.double()), (nb, sb.double())):
            log_sim = budget.search_sim(sc, grid, k, "faithful", log=True)
            out[name] = visit.faithful(visit.directed_edges(sc, log_sim, log=True), grid)
        la, lb = out[na][0].cpu(), out[nb][0].cpu()
        ari = [adjusted_rand_index(la[i], lb[i]) for i in range(sa.shape[0])]
        same = [bool(torch.equal(la[i], lb[i])) for i in range(sa.shape[0])]
        rows.append({
            "keep ratio": f"{rho:g}",
            "budget (tokens)": k,
            f"tokens kept, {na}": float(out[na][1].double().mean()),
            f"tokens kept, {nb}": float(out[nb][1].double().mean()),
            "ARI between the metrics": float(np.mean(ari)),
            "identical partitions (% images)": 100 * float(np.mean(same)),
        })
    return pd.DataFrame(rows).set_index("keep ratio")


def agreement_summary(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Summarise :func:`tomato.harness.agreement.method_agreement` rows, one line per setting.

    Columns: images; mean patch tokens kept by the faithful visit and the "either" /
    "both" rules; % of images where parallel "directed" equals faithful exactly; mean
    adjusted Rand index and mean share of faithful groups found unchanged, per rule.
    """
    import pandas as pd

    df = pd.DataFrame(list(rows))
    # A rule reproduces the faithful partition when every faithful group is found as is.
    df["either_same"] = df["identical_either"] == 1.0
    df["both_same"] = df["identical_both"] == 1.0
    g = df.groupby("setting", sort=False)
    out = pd.DataFrame({
        "images": g.size(),
        "tokens faithful": g["tokens_faithful"].mean(),
        "tokens either": g["tokens_either"].mean(),
        "tokens both": g["tokens_both"].mean(),
        "directed == faithful (% images)": 100 * g["same_directed"].mean(),
        "ARI either": g["ari_either"].mean(),
        "ARI both": g["ari_both"].mean(),
        "groups unchanged, either (%)": 100 * g["identical_either"].mean(),
        "groups unchanged, both (%)": 100 * g["identical_both"].mean(),
        "either == faithful (% images)": 100 * g["either_same"].mean(),
        "both == faithful (% images)": 100 * g["both_same"].mean(),
    })
    return out


def _labels_at(log_scores: torch.Tensor, grid: Sequence[int], log_sim: float) -> torch.Tensor:
    """log_scores: (N, 4) natural-log neighbour scores -> (N,) faithful labels at one
    (natural-log) threshold."""
    edges = visit.directed_edges(log_scores[None].double(), log_sim, log=True)
    labels, _ = visit.faithful(edges, grid)
    return labels[0]


def _png(picture: np.ndarray, title: str, size: float = 4.2) -> bytes:
    """Render an (H, W, 3) picture with a title to PNG bytes, without pyplot (so nothing
    is shown by the notebook's inline backend)."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(size, size + 0.4))
    ax = fig.add_subplot()
    ax.imshow(picture)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _slider_view(slider: Any, render: Any) -> Any:
    """A slider above an image widget that ``render(value) -> png bytes`` refreshes.

    The picture lives in an ``ipywidgets.Image`` (a plain value), not in an ``Output``
    widget capturing a figure: nothing waits on the front end, so headless execution
    (papermill) never blocks on it.
    """
    import ipywidgets as widgets

    image = widgets.Image(value=render(slider.value), format="png")

    def update(change: Mapping[str, Any]) -> None:
        image.value = render(change["new"])

    slider.observe(update, names="value")
    return widgets.VBox([slider, image])


def sim_slider(
    image: np.ndarray,
    log_scores: torch.Tensor,
    grid: Sequence[int],
    title: str = "",
    sim_range: tuple[int, int] = (-60, 0),
    value: float = 1e-7,
) -> Any:
    """An ipywidgets slider over ``sim`` (log scale) redrawing the group map of one image
    (faithful visit).

    image: (H, W, 3) in [0, 1]; log_scores: (N, 4) natural-log neighbour scores of that
    image (:func:`tomato.core.visit.neighbour_scores` of :func:`tomato.core.similarity.log_distribution`).
    Returns the widget (display it); nothing blocks, so it also runs headless.
    """
    import ipywidgets as widgets

    n = log_scores.shape[0]

    def render(sim: float) -> bytes:
        labels = _labels_at(log_scores, grid, math.log(sim))
        k = int(labels.max()) + 1
        return _png(group_picture(image, labels, grid),
                    f"{title}\nsim = {sim:.1e}: {k} of {n} tokens kept ({100 * (n - k) / n:.1f}% cut)")

    slider = widgets.FloatLogSlider(value=value, base=10, min=sim_range[0], max=sim_range[1], step=0.5,
                                    description="sim", readout_format=".1e", continuous_update=False)
    return _slider_view(slider, render)


def keep_slider(
    image: np.ndarray,
    log_scores: torch.Tensor,
    grid: Sequence[int],
    title: str = "",
    value: float = 0.5,
) -> Any:
    """An ipywidgets slider over the keep ratio redrawing the merged picture of one image
    (``sim`` chosen by the token-budget search, faithful visit).

    image: (H, W, 3) in [0, 1]; log_scores: (N, 4) natural-log neighbour scores of that
    image (:func:`tomato.core.visit.neighbour_scores` of :func:`tomato.core.similarity.log_distribution`).
    Returns the widget (display it); nothing blocks, so it also runs headless.
    """
    import ipywidgets as widgets

    n = log_scores.shape[0]
    s = log_scores[None].double()

    def render(keep_ratio: float) -> bytes:
        k = budget.budget_tokens(n, keep_ratio=keep_ratio)
        log_sim = float(budget.search_sim(s, grid, k, "faithful", log=True)[0])
        labels = _labels_at(log_scores, grid, log_sim)
        return _png(merge_picture(image, labels, grid),
                    f"{title}\nkeep ratio {keep_ratio:.2f}: {int(labels.max()) + 1} of {n} tokens, "
                    f"sim = 1e{log_sim / math.log(10):.1f}")

    slider = widgets.FloatSlider(value=value, min=0.05, max=1.0, step=0.05, description="keep",
                                 readout_format=".2f", continuous_update=False)
    return _slider_view(slider, render)
