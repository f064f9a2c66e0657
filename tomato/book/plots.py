"""Plots of the walk-through notebooks: neighbour-score histograms, the asymmetry
scatter, tokens per block, token cuts and token sizes. Each draws on a given axes.

matplotlib is imported inside the functions that need it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..core import visit
from ..harness.variants import PAPER_SIMS
from .paper import TOKEN_CUT_SIM_1E7, TOME_R2_TOKEN_CUT

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes


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
    tome_cut: float | None = TOME_R2_TOKEN_CUT,
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

