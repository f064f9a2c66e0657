"""The timing figures of the results pages: latency, speed-ups, throughput.

The rows they plot come from recorded timing runs (:mod:`tomato.book.runs`); variant
names, series and order come from :mod:`tomato.harness.variants`. Point labels are placed
where they overlap nothing (:func:`place_labels`). matplotlib and pandas (the ``[book]``
extra) are imported inside the functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..harness import variants
from .tables import weights_note

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes


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


def label_items(rows: pd.DataFrame, x: str, y: str) -> list[tuple[float, float, str, str]]:
    """(x, y, parameter text, colour) of every non-baseline point of ``rows`` on axes ``x`` and ``y``."""
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
