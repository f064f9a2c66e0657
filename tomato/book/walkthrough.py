"""The walk-through pages (01-03): their plots and their small studies.

Plots: neighbour-score histograms, the asymmetry scatter, tokens per block, token cuts and
token sizes, each on a given axes; and small hand-made grids drawn cell by cell (the
faithful visit frame by frame).

Studies that run ToMato's pipeline on block-0 scores: the log distribution as the merge
step compares it, how many neighbour edges pass each threshold under two metrics, the two
metrics at equal token budgets, and a summary of the faithful-vs-parallel agreement study.
Every grouping goes through :mod:`tomato.core.pipeline` (``labels_at``,
``group_scores``), the same code the patched model runs. matplotlib and pandas are
imported inside the functions that need them.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..core import budget, pipeline, similarity, visit
from ..harness.agreement import adjusted_rand_index
from ..harness.variants import PAPER_SIMS
from .paper import TOKEN_CUT_SIM_1E7, TOME_R2_TOKEN_CUT
from .pictures import changed_tokens, outline_tokens

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..core.probe import Block0


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


# hand-made grids ---------------------------------------------------------------------------------
# Small hand-made grids drawn cell by cell: the faithful visit frame by frame
# (Algorithms 1-2 of the paper) and several partitions of one grid side by side.
#
# matplotlib is imported inside the functions that need it.

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


# --------------------------------------------------------------------------- studies
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
    """How many directed neighbour edges pass each threshold under two metrics, and how
    often the two metrics make the same decision.

    scores: exactly two entries, metric name -> (B, N, 4) natural-log neighbour scores
    (:func:`tomato.core.pipeline.neighbour_log_scores`). One row per distinct sim,
    indexed by ``f"{sim:.3g}"``: % of edges passing under each metric, % of edges where
    both metrics decide alike, the Jaccard overlap of the passing edge sets, and the mean
    patch tokens the faithful visit keeps under each.
    """
    import pandas as pd

    (na, sa), (nb, sb) = scores.items()
    valid = torch.isfinite(sa) & torch.isfinite(sb)
    rows = []
    for sim in dict.fromkeys(float(s) for s in sims):  # a repeated sim would repeat its row
        log_sim = torch.tensor(math.log(sim) if sim > 0 else -math.inf, dtype=torch.float64)
        pa = visit.directed_edges(sa, log_sim, log=True)[valid]
        pb = visit.directed_edges(sb, log_sim, log=True)[valid]
        union = int((pa | pb).sum())
        rows.append({
            "sim": f"{sim:.3g}",
            f"edges passing, {na} (%)": 100 * float(pa.double().mean()),
            f"edges passing, {nb} (%)": 100 * float(pb.double().mean()),
            "same decision (%)": 100 * float((pa == pb).double().mean()),
            "Jaccard of passing edges": float((pa & pb).sum()) / union if union else float("nan"),
            f"tokens kept, {na}": float(pipeline.labels_at(sa, grid, log_sim)[1].double().mean()),
            f"tokens kept, {nb}": float(pipeline.labels_at(sb, grid, log_sim)[1].double().mean()),
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

    (na, sa), (nb, sb) = scores.items()
    rows = []
    for rho in dict.fromkeys(float(k) for k in keep_ratios):
        settings = pipeline.Settings(keep_ratio=rho)
        ga, gb = (pipeline.group_scores(s.double(), grid, settings) for s in (sa, sb))
        la, lb = ga.labels.cpu(), gb.labels.cpu()
        rows.append({
            "keep ratio": f"{rho:g}",
            "budget (tokens)": budget.budget_tokens(sa.shape[1], keep_ratio=rho),
            f"tokens kept, {na}": float(ga.counts.double().mean()),
            f"tokens kept, {nb}": float(gb.counts.double().mean()),
            "ARI between the metrics": float(np.mean([adjusted_rand_index(a, b) for a, b in zip(la, lb)])),
            "identical partitions (% images)": 100 * float(np.mean([bool(torch.equal(a, b)) for a, b in zip(la, lb)])),
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

