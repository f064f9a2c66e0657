"""The results figures of notebooks 04-07: latency, speed-ups, throughput, trade-offs.

The rows they plot come from :mod:`tomato.book.runs` and :mod:`tomato.book.measures`;
variant names, series and order come from :mod:`tomato.harness.variants`. matplotlib
and pandas (the ``[book]`` extra) are imported inside the functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..harness import variants
from . import paper
from .display import weights_note

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
        for s, xv, yv in zip(g["variant"], g["ideal_speedup"], g["speedup"]):
            ax.annotate(_short(s), (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if len(df):
        lo = min(df["ideal_speedup"].min(), df["speedup"].min(), 1.0) * 0.95
        hi = max(df["ideal_speedup"].max(), df["speedup"].max(), 1.0) * 1.05
        ax.plot([lo, hi], [lo, hi], "--", color="grey", lw=1, label="measured = ideal")
    ax.set_xlabel("FLOP-ideal speed-up (×)")
    ax.set_ylabel("measured speed-up (×, median)")
    ax.legend(fontsize=7)
    _title(ax, title, pretrained, accuracy=False)
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
                  legend: bool = True) -> Axes:
    """Figure 3's axes: ``y`` (default top-1) against latency ``x``; ToMe's points joined
    in order of r, ToMato's in order of sim, plus the parallel and keep-ratio variants and
    the baseline as a star. Points are annotated with their parameter."""
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
        for k, (s, xv, yv) in enumerate(zip(g["variant"], g[x], g[y])):
            dy = -10 if fam == "parallel" else (4 if k % 2 == 0 else -10)
            ax.annotate(_short(s), (xv, yv), fontsize=8, xytext=(4, dy), textcoords="offset points", color=color)
    ax.set_xlabel({"median_s": "latency, median (s, batch 1)", "gflops": "GFLOPs per image (timed images)",
                   "gflops_eval": "GFLOPs per image (mean over the evaluated images)",
                   "tokens_mean": "patch tokens after block 0 (mean)"}.get(x, x))
    ax.set_ylabel(ylabel or {"top1": "top-1 (%)", "top1_agreement": "top-1 agreement with baseline (%)",
                             "tokens_mean": "patch tokens after block 0"}.get(y, y))
    if legend:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _title(ax, title or f"{y} vs {x}", pretrained, accuracy=y in ("top1", "top5"))
    return ax


def plot_agreement(agreement: pd.DataFrame, ax: Axes | None = None, *,
                   title: str = "Predictions changed by merging") -> Axes:
    """Horizontal bars per variant: % of images whose top-1 differs from the baseline's
    (100 - top-1 agreement) and % of the baseline's top-5 classes missing from the
    variant's top-5 (100 - top-5 overlap), from :func:`prediction_agreement`. Values are
    written on the bars; the axis zooms in on small changes. Meaningful with any weights."""
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
    return ax


def plot_tradeoff_panels(rows: pd.DataFrame, *, pretrained: bool | None, title: str = "") -> Any:
    """Figure 3 and its weight-proof companions in one 2x2 figure: top-1 vs latency (the
    paper's axes), top-1 agreement vs latency, top-1 agreement vs GFLOPs, tokens after
    block 0 vs GFLOPs. Panels whose columns are missing say so. Returns the figure."""
    import matplotlib.pyplot as plt

    def has(*cols: str) -> bool:
        return all(c in rows for c in cols) and bool(rows[list(cols)].notna().all(axis=1).any())

    g = "gflops_eval" if has("gflops_eval") else "gflops"
    if has("median_s") or has(g):
        fig, axes = plt.subplots(2, 2, figsize=(10, 9))
        panels = [
            ("top1", "median_s", "Figure 3 axes: top-1 vs latency"),
            ("top1_agreement", "median_s", "Top-1 agreement with the baseline vs latency"),
            ("top1_agreement", g, "Top-1 agreement with the baseline vs FLOPs"),
            (g, "tokens_mean", "FLOPs vs tokens after block 0"),
        ]
    else:  # no timing recorded (yet): token counts are the only cost axis
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
        panels = [
            ("top1", "tokens_mean", "top-1 vs tokens after block 0 (no timing recorded)"),
            ("top1_agreement", "tokens_mean", "Top-1 agreement with the baseline vs tokens after block 0"),
        ]
    for ax, (y, x, name) in zip(axes.flat, panels):
        if not has(x, y):
            ax.text(0.5, 0.5, f"no {x} / {y} recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name, fontsize=10)
            ax.set_axis_off()
            continue
        plot_tradeoff(rows, y=y, x=x, ax=ax, title=name, pretrained=pretrained, legend=False,
                      ylabel="GFLOPs per image" if y.startswith("gflops") else None)
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(5, len(handles)),
                   fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 1))
    return fig
