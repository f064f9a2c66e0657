"""The results figures of notebooks 04-07: latency, speed-ups, throughput, trade-offs.

The rows they plot come from :mod:`tomato.book.runs` and :mod:`tomato.book.measures`;
variant names, series and order come from :mod:`tomato.harness.variants`. matplotlib
and pandas (the ``[book]`` extra) are imported inside the functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..harness import variants
from . import measures, paper, runs
from .notes import diversity_line, weights_note

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from .runs import RecordedRun


_COLORS = {"deit": "black", "tome": "tab:blue", "tomato": "tab:red", "parallel": "tab:purple",
           "keep": "tab:green", "tokens": "tab:olive"}


def _family(spec: str) -> str:
    """Plot series of a variant (:attr:`tomato.harness.variants.Variant.family`)."""
    try:
        return variants.parse(spec).family
    except ValueError:
        return "other"


_FAMILY_LABEL = {"deit": "baseline (no merging)", "tome": "ToMe (r)", "tomato": "ToMato (sim)",
                 "parallel": "ToMato parallel (sim)", "keep": "ToMato auto-sim (keep ratio)",
                 "tokens": "ToMato auto-sim (tokens)"}


def _short(spec: str) -> str:
    try:
        return variants.parse(spec).short
    except ValueError:
        return spec


def _title(ax: Axes, title: str, pretrained: bool | None, accuracy: bool = True) -> None:
    """Title plus, for random-init weights, a note: on accuracy plots that top-1/top-5 are
    not accuracy; on timing plots that ToMato's token counts are an untrained network's."""
    if pretrained is None or pretrained:
        note = ""
    elif accuracy:
        note = weights_note(False)
    else:
        note = "random-init weights: an untrained network's token counts"
    ax.set_title(title + (f"\n({note})" if note else ""), fontsize=9)


def plot_latency(rows: pd.DataFrame, ax: Axes | None = None, *, title: str = "Latency, batch 1",
                 pretrained: bool | None = None) -> Axes:
    """Bars of the median latency per variant with IQR error bars (``q1_s``/``q3_s``, or
    ``iqr_s`` split evenly around the median), and the paper-protocol mean as dots."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    df = rows.reset_index(drop=True)
    med = df["median_s"].astype(float).to_numpy()
    if {"q1_s", "q3_s"} <= set(df):
        lo = med - df["q1_s"].astype(float).to_numpy()
        hi = df["q3_s"].astype(float).to_numpy() - med
    else:
        half = df["iqr_s"].astype(float).to_numpy() / 2
        lo = hi = half
    x = np.arange(len(df))
    colors = [_COLORS.get(_family(s), "grey") for s in df["variant"]]
    ax.bar(x, med, yerr=[lo, hi], color=colors, alpha=0.75, capsize=4, label="median (IQR bars)")
    if "paper_mean_s" in df and df["paper_mean_s"].notna().any():
        ax.plot(x, df["paper_mean_s"].astype(float), "o", color="orange",
                label="paper protocol: mean of 10, no warm-up")
    ax.set_xticks(x, [variants.label(s) for s in df["variant"]], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("seconds per image")
    ax.legend(fontsize=8)
    _title(ax, title, pretrained, accuracy=False)
    return ax


def plot_speedup(rows: pd.DataFrame, ax: Axes | None = None, *, title: str = "Measured vs FLOP-ideal speed-up",
                 pretrained: bool | None = None) -> Axes:
    """Measured speed-up (baseline median / variant median) against the FLOP-ideal one
    (baseline FLOPs / variant FLOPs); points under the diagonal lose time to overheads."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    df = rows.dropna(subset=["speedup", "ideal_speedup"])
    for fam, g in df.groupby(df["variant"].map(_family), sort=False):
        ax.scatter(g["ideal_speedup"], g["speedup"], color=_COLORS.get(fam, "grey"), label=_FAMILY_LABEL.get(fam, fam))
    if len(df):
        lo = min(df["ideal_speedup"].min(), df["speedup"].min(), 1.0) * 0.95
        hi = max(df["ideal_speedup"].max(), df["speedup"].max(), 1.0) * 1.05
        ax.plot([lo, hi], [lo, hi], "--", color="grey", lw=1, label="measured = ideal")
    ax.set_xlabel("FLOP-ideal speed-up (×)")
    ax.set_ylabel("measured speed-up (×, median)")
    ax.legend(fontsize=7)
    _title(ax, title, pretrained, accuracy=False)
    place_labels(ax, label_items(df, "ideal_speedup", "speedup"), fontsize=7)
    return ax


def plot_throughput(rows: pd.DataFrame, ax: Axes | None = None, *, title: str = "Throughput vs batch size",
                    pretrained: bool | None = None) -> Axes:
    """Images per second (median) against batch size, one line per variant."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for spec, g in rows.groupby("variant", sort=False):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["throughput_img_s"], "o-", color=_COLORS.get(_family(spec), "grey"),
                label=variants.label(spec), alpha=0.8)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (median)")
    ax.set_xticks(sorted(rows["batch_size"].unique()))
    ax.legend(fontsize=7)
    _title(ax, title, pretrained, accuracy=False)
    return ax


def plot_tradeoff(rows: pd.DataFrame, y: str = "top1", ax: Axes | None = None, *, x: str = "median_s",
                  title: str | None = None, ylabel: str | None = None, pretrained: bool | None = None,
                  legend: bool = True, annotate: bool = True) -> Axes:
    """Figure 3's axes: ``y`` (default top-1) against latency ``x``; ToMe's points joined
    in order of r, ToMato's in order of sim, plus the parallel and keep-ratio variants and
    the baseline as a star. With ``x="rel_latency"`` (:func:`tomato.book.measures.relative_latency`)
    the bootstrap interval is drawn as a horizontal bar. Points are labelled with their
    parameter (:func:`place_labels`; with ``annotate=False`` the caller places them after
    its layout is final)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    df = rows.dropna(subset=[x, y]).copy()
    df["family"] = df["variant"].map(_family)
    df = df.set_index("variant").loc[variants.order(list(df["variant"]))].reset_index()
    for fam, g in df.groupby("family", sort=False):
        color = _COLORS.get(fam, "grey")
        if fam == "deit":
            ax.scatter(g[x], g[y], marker="*", s=180, color=color, label=_FAMILY_LABEL[fam], zorder=3)
            continue
        style = "o-" if fam in ("tome", "tomato", "keep") else "s"
        ax.plot(g[x], g[y], style, color=color, label=_FAMILY_LABEL.get(fam, fam), alpha=0.85,
                mfc="none" if fam == "parallel" else color, ms=8 if fam == "parallel" else 6)
        if {"rel_low", "rel_high"} <= set(g) and x == "rel_latency" and g["rel_low"].notna().any():
            # clip: a median can sit outside its own bootstrap interval by rounding
            below, above = (g[x] - g["rel_low"]).clip(lower=0), (g["rel_high"] - g[x]).clip(lower=0)
            ax.errorbar(g[x], g[y], xerr=[below, above], fmt="none", ecolor=color, alpha=0.5, capsize=2, lw=1)
    ax.set_xlabel({"median_s": "latency, median (s, batch 1)",
                   "rel_latency": "latency relative to the baseline (ratio of medians, batch 1)",
                   "gflops": "GFLOPs per image (timed images)",
                   "gflops_eval": "GFLOPs per image (mean over the evaluated images)",
                   "tokens_mean": "patch tokens after block 0 (mean)"}.get(x, x))
    ax.set_ylabel(ylabel or {"top1": "top-1 (%)", "top1_agreement": "top-1 agreement with baseline (%)",
                             "tokens_mean": "patch tokens after block 0"}.get(y, y))
    if legend:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _title(ax, title or f"{y} vs {x}", pretrained, accuracy=y in ("top1", "top5"))
    if annotate:
        place_labels(ax, label_items(rows, x, y))
    return ax


def label_items(rows: pd.DataFrame, x: str, y: str) -> list[tuple[float, float, str, str]]:
    """(x, y, parameter text, colour) of every non-baseline point :func:`plot_tradeoff` draws."""
    df = rows.dropna(subset=[x, y])
    return [(float(xv), float(yv), _short(s), _COLORS.get(_family(s), "grey"))
            for s, xv, yv in zip(df["variant"], df[x], df[y]) if _family(s) != "deit"]


def _label_spots() -> list[tuple[float, float, str, str]]:
    """Where a point's label may go, tried in order: (dx, dy) in points from the point and
    the text's alignment; rings of eight directions, nearest ring first."""
    spots = []
    for radius in (6.0, 16.0, 28.0, 42.0, 58.0):
        for ux, uy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)):
            ha = {1: "left", 0: "center", -1: "right"}[ux]
            va = {1: "bottom", 0: "center", -1: "top"}[uy]
            scale = radius / (2 ** 0.5 if ux and uy else 1.0)
            spots.append((ux * scale, uy * scale, ha, va))
    return spots


_LABEL_SPOTS = _label_spots()


def place_labels(ax: Axes, items: Sequence[tuple[float, float, str, str]], fontsize: float = 7.5) -> int:
    """Write each point's label where it overlaps no marker, no other label and stays in
    the axes; the first free spot of :func:`_label_spots` wins (a thin leader line for the
    far ones). ``items``: (x, y, text, colour), e.g. from :func:`label_items`. Call it after
    the figure's layout is final (``tight_layout``): the spots are found in display space.
    Returns how many labels found no free spot (placed at the last one anyway)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    items = list(items)
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform([(x, y) for x, y, *_ in items]) if items else []
    taken = [Bbox.from_bounds(px - 5, py - 5, 10, 10) for px, py in centres]
    crowded = 0
    for x, y, text, color in items:
        for k, (dx, dy, ha, va) in enumerate(_LABEL_SPOTS):
            far = abs(dx) + abs(dy) > 12
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize, color=color,
                            arrowprops={"arrowstyle": "-", "color": color, "lw": 0.5, "alpha": 0.6} if far else None)
            # The text's own box (an Annotation's extent also spans its leader line),
            # once the offset is resolved to display space.
            t.update_positions(renderer)
            box = Text.get_window_extent(t, renderer).expanded(1.04, 1.1)
            fits = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1)
            if fits and not any(box.overlaps(b) for b in taken):
                taken.append(box)
                break
            if k < len(_LABEL_SPOTS) - 1:
                t.remove()
            else:
                crowded += 1
                taken.append(box)
    return crowded


def plot_agreement(agreement: pd.DataFrame, ax: Axes | None = None, *,
                   title: str = "Predictions changed by merging",
                   diversity: Mapping[str, Any] | None = None) -> Axes:
    """Horizontal bars per variant: % of images whose top-1 differs from the baseline's
    (100 - top-1 agreement) and % of the baseline's top-5 classes missing from the
    variant's top-5 (100 - top-5 overlap), from :func:`prediction_agreement`. Values are
    written on the bars; the axis zooms in on small changes. Meaningful with any weights,
    but cheap when the baseline is degenerate: ``diversity``
    (:func:`tomato.book.runs.baseline_diversity`) is written under the axis."""
    import matplotlib.pyplot as plt
    import numpy as np

    df = agreement[agreement["variant"] != variants.canonical(paper.BASELINE)].reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.45 * max(3, len(df)) + 1))
    y = np.arange(len(df))
    top1 = 100.0 - df["top1_agreement"].astype(float)
    top5 = 100.0 - df["top5_overlap"].astype(float)
    ax.barh(y - 0.2, top1, height=0.4, color="tab:red", alpha=0.8, label="top-1 changed")
    ax.barh(y + 0.2, top5, height=0.4, color="tab:grey", alpha=0.6, label="top-5 classes lost")
    hi = max(1.0, float(np.nanmax([top1.max(), top5.max()])) if len(df) else 1.0)
    for yi, a, b in zip(y, top1, top5):
        ax.text(a + hi * 0.01, yi - 0.2, f"{a:.1f}%", va="center", fontsize=7)
        ax.text(b + hi * 0.01, yi + 0.2, f"{b:.1f}%", va="center", fontsize=7, color="dimgrey")
    ax.set_yticks(y, [f"{variants.label(s)} (n={n})" for s, n in zip(df["variant"], df["n"])], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, hi * 1.25)
    ax.set_xlabel("% of images (paired with the baseline on the same images)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title, fontsize=10)
    _footer(ax, diversity)
    return ax


def plot_run_agreement(run: RecordedRun, *, title: str) -> Axes | None:
    """:func:`plot_agreement` of ``run``'s recorded predictions, with its baseline's
    prediction diversity under the axis; None when fewer than two variants hold predictions."""
    agreement = measures.prediction_agreement(run)
    if len(agreement) < 2:
        return None
    return plot_agreement(agreement, title=title, diversity=runs.baseline_diversity(run))


def _diversity_color(diversity: Mapping[str, Any] | None) -> str:
    """Red for a degenerate baseline, grey otherwise."""
    return "darkred" if diversity and diversity["degenerate"] else "dimgrey"


def _footer(ax: Axes, diversity: Mapping[str, Any] | None) -> None:
    """The baseline's prediction diversity under an agreement axis (red when degenerate)."""
    ax.annotate(diversity_line(diversity), (0, 0), xycoords="axes fraction", xytext=(0, -34),
                textcoords="offset points", fontsize=7.5, va="top", color=_diversity_color(diversity))


def plot_tradeoff_panels(rows: pd.DataFrame, *, pretrained: bool | None, title: str = "",
                         diversity: Mapping[str, Any] | None = None) -> Any:
    """Figure 3 in the paper's setting and its weight-proof companions, one figure.

    Panels:

    * (a) the paper's Table 1 points, top-1 against latency relative to DeiT-B (Jetson Nano);
    * (b) this run on the same x axis, top-1 with trained weights (the paper's points drawn
      beside it), top-1 agreement with the baseline otherwise (random-init top-1 is chance
      and is not drawn);
    * (c) agreement against GFLOPs;
    * (d) GFLOPs against tokens after block 0.

    Without timing, panel (b) uses tokens after block 0 and (c)-(d) are left out. ``diversity``
    (:func:`tomato.book.runs.baseline_diversity`) goes under the agreement panels.
    Labels are placed after the layout so that none overlap. Returns the figure.
    """
    import matplotlib.pyplot as plt

    df = measures.relative_latency(rows)

    def has(*cols: str) -> bool:
        return all(c in df for c in cols) and bool(df[list(cols)].notna().all(axis=1).any())

    y = "top1" if pretrained else "top1_agreement"
    g = "gflops_eval" if has("gflops_eval") else "gflops"
    timed = has("rel_latency", y)
    fig, axes = plt.subplots(2, 2, figsize=(10, 9)) if timed else plt.subplots(1, 2, figsize=(10, 4.6))
    axes = list(axes.flat)
    pp = measures.paper_points()
    pax = axes[0]
    for _, r in pp.iterrows():
        fam = _family(r["variant"])
        pax.scatter(r["rel_latency"], r["top1"], marker="*" if fam == "deit" else "D", s=150 if fam == "deit" else 50,
                    color=_COLORS.get(fam, "grey"), zorder=3)
    pax.set_xlabel("latency relative to DeiT-B (Jetson Nano, Table 1 as printed)")
    pax.set_ylabel("top-1 (%), ImageNet-Mini")
    pax.set_title("(a) The paper's Table 1 as Figure 3\n(trained DeiT-B, printed values)", fontsize=9)
    pax.grid(alpha=0.3)
    panels = [("(b) This run: " + ("top-1" if pretrained else "agreement with the baseline") + " vs latency",
               "rel_latency" if timed else "tokens_mean", y)]
    if timed and has(g, y):
        panels.append(("(c) Agreement with the baseline vs FLOPs", g, "top1_agreement"))
    if timed and has("tokens_mean", g):
        panels.append(("(d) FLOPs vs tokens after block 0", "tokens_mean", g))
    drawn = []
    for ax, (name, x, yy) in zip(axes[1:], panels):
        if not has(x, yy):
            ax.text(0.5, 0.5, f"no {x} / {yy} recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name, fontsize=9)
            ax.set_axis_off()
            continue
        plot_tradeoff(df, y=yy, x=x, ax=ax, title=name, pretrained=pretrained, legend=False, annotate=False,
                      ylabel="GFLOPs per image" if yy.startswith("gflops") else None)
        drawn.append((ax, x, yy))
    for ax in axes[1 + len(panels):]:
        ax.remove()
    if timed:  # (a) and (b) share their x range so that ratios read alike
        b = axes[1]
        lo = min(pax.get_xlim()[0], b.get_xlim()[0], 0.7)
        hi = max(pax.get_xlim()[1], b.get_xlim()[1], 1.05)
        for ax in (pax, b):
            ax.set_xlim(lo, hi)
            ax.axvline(1.0, color="grey", lw=0.8, ls=":")
        if pretrained:  # the paper's points on our axes, for a like-for-like reading
            b.scatter(pp["rel_latency"], pp["top1"], marker="D", facecolors="none", edgecolors="grey",
                      label="paper, Table 1", zorder=2)
    handles = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", bbox_to_anchor=(0.5, 0.025),
                   ncol=min(4, len(handles)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if handles else 0.03, 1, 1))
    # Labels last: their free spots depend on the final layout.
    place_labels(pax, [(float(r["rel_latency"]), float(r["top1"]), r["label"], _COLORS.get(_family(r["variant"]), "grey"))
                       for _, r in pp.iterrows()])
    for ax, x, yy in drawn:
        place_labels(ax, label_items(df, x, yy))
    if not pretrained:
        fig.text(0.01, 0.005, diversity_line(diversity), fontsize=8, va="bottom", color=_diversity_color(diversity))
    return fig
