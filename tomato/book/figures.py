"""The figures of the results pages: latency, speed-ups and throughput from recorded
timing runs, and the paper's Figure 2 on the model trained here.

The timing rows come from recorded runs (:mod:`tomato.book.runs`); variant names, series
and order from :mod:`tomato.harness.variants`. Point labels are placed where they overlap
nothing (:func:`place_labels`). matplotlib and pandas (the ``[book]`` extra) are imported
inside the functions.

**Figure 2.** The paper's Figure 2 shows pretrained DeiT-B merging uniform backgrounds (a
sky, a wall) into a few large groups at ``sim = 1e-7``. Whether a model does that is a
property of its attention, so the figure is drawn on the committed model and read with one
number per ``sim``: the share of the *uniform* patches (pixels that vary by less than a few
levels) that joined a group of two or more (:func:`draw`, :func:`read`). The photos are the
ones with the most uniform patches among the first few of each class (Imagenette's val
photos where they are on the machine, else the photos shipped with scikit-image), chosen by
their pixels alone, before any model sees them (:func:`most_uniform`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from ..harness import data as datasets
from ..harness import variants
from .paper import sim_for_cut
from .pictures import labels_from_tome_source, merge_picture, picture_grid
from .runs import RecordedRun
from .tables import weights_note

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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


# --------------------------------------------------------------------------- Figure 2
#: A patch is uniform when its pixels' standard deviation (in each channel, in [0, 1]) is
#: below this: about 10 of 255 levels, a clear sky or a plain wall, not a textured lawn.
UNIFORM_STD = 0.04


@dataclass
class Photos:
    """Photos as the model reads them: inputs (B, 3, H, W), display arrays (H, W, 3) in
    [0, 1], names, and where they come from (in words, for the page)."""

    images: torch.Tensor
    shown: list[np.ndarray]
    names: list[str]
    source: str


@dataclass
class Reading:
    """What the figure shows, per ``sim``: patch tokens kept per photo (mean) and the share
    of the photos' uniform patches that joined a group of two or more (%)."""

    sims: list[float]
    kept_mean: list[float]
    uniform_merged: list[float]
    uniform_patches: int
    patches: int

    @property
    def like_paper(self) -> str:
        """"looks like" when most uniform patches merge at the first sim (the paper's
        picture at 1e-7), else "does not look like": the page's verdict words."""
        return "looks like" if self.uniform_merged[0] >= 50 else "does not look like"


def uniform_patches(photo: np.ndarray, grid: Sequence[int], std: float = UNIFORM_STD) -> np.ndarray:
    """photo: (H, W, C) in [0, 1] -> (N,) bool, True where, in every channel, the patch's
    pixels vary by less than ``std`` (N = grid[0] * grid[1], row-major like the tokens). Per
    channel: a flat blue sky is uniform although its three channels differ."""
    gh, gw = int(grid[0]), int(grid[1])
    h, w = photo.shape[0] // gh, photo.shape[1] // gw
    patches = np.asarray(photo)[:gh * h, :gw * w].reshape(gh, h, gw, w, -1).transpose(0, 2, 1, 3, 4)
    return (patches.reshape(gh * gw, h * w, -1).std(axis=1) < std).all(axis=1)


def candidates(val: str | Path, per_class: int = 12) -> tuple[list[datasets.Sample], str]:
    """The first ``per_class`` photos of each class of ``val`` (``<wnid>/*.JPEG``), or the
    photos shipped with scikit-image when ``val`` is absent; and their source in words."""
    root = Path(val)
    if root.is_dir():
        by_class: dict[str, list[datasets.Sample]] = {}
        for s in datasets.scan_imagenet_folder(root):
            by_class.setdefault(s.wnid, []).append(s)
        picked = [s for files in by_class.values() for s in files[:per_class]]
        return picked, f"Imagenette's val photos (the first {per_class} of each class)"
    return datasets.smoke_samples(), "the photos shipped with scikit-image (Imagenette's val photos are not here)"


def most_uniform(samples: Sequence[datasets.Sample], source: str, model: nn.Module, n: int = 4) -> Photos:
    """The ``n`` photos of ``samples`` with the most uniform patches, at most one per class,
    read as ``model`` sees them (unreadable photos are passed over)."""
    from .notebook import read_photos

    grid = tuple(model.patch_embed.grid_size)
    scored = []
    for s in samples:
        images, shown, kept, _ = read_photos([s], model)
        if images is not None:
            scored.append((float(uniform_patches(shown[0], grid).mean()), s.wnid, images[0], shown[0]))
    scored.sort(key=lambda t: -t[0])
    chosen, classes = [], set()
    for item in scored:
        if item[1] not in classes:
            chosen.append(item)
            classes.add(item[1])
        if len(chosen) == n:
            break
    return Photos(torch.stack([c[2] for c in chosen]), [c[3] for c in chosen],
                  [datasets.wnid_name(c[1]) for c in chosen], source)


def sims(runs: Sequence[RecordedRun], weights_sha256: str) -> list[float]:
    """The figure's two thresholds: the paper's ``1e-7``, and the recorded sim whose mean
    token cut on these weights comes nearest the paper's (:func:`paper.sim_for_cut`;
    ``1e-15`` when no record of these weights says)."""
    near = sim_for_cut(runs, weights_sha256=weights_sha256)
    return [1e-7, near[0] if near is not None and near[0] != 1e-7 else 1e-15]


def draw(model: nn.Module, photos: Photos, sims: Sequence[float], tome_r: int = 2, *, suptitle: str = ""
         ) -> tuple[Figure, Reading]:
    """Figure 2 on ``photos``: per row a photo, ToMato's merge at each of ``sims`` and ToMe's
    with ``tome_r`` after its last block, each group painted its mean colour; and its
    :class:`Reading`. ``model`` is left unpatched."""
    from ..core import patch

    grid = tuple(model.patch_embed.grid_size)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    columns: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    patch.timm(model)
    try:
        for s in sims:
            model.sim = s
            with torch.inference_mode():
                model(photos.images)
            st = patch.state(model)
            columns.append((f"ToMato sim={s:g}", st.labels.clone().cpu(), st.tokens.clone().cpu()))
    finally:
        patch.remove(model)
    patch.tome(model, trace_source=True)
    try:
        model.r = tome_r
        with torch.inference_mode():
            model(photos.images)
        labels = labels_from_tome_source(patch.state(model).source, prefix).cpu()
    finally:
        patch.remove(model)
    columns.append((f"ToMe r={tome_r}", labels, labels.max(dim=1).values + 1))
    pics, titles = [], []
    for k, (photo, name) in enumerate(zip(photos.shown, photos.names)):
        pics.append(photo)
        titles.append(name)
        for title, lab, tokens in columns:
            pics.append(merge_picture(photo, lab[k], grid))
            titles.append(f"{title}: {int(tokens[k])} tokens")
    fig = picture_grid(pics, titles, cols=len(columns) + 1, size=2.4, suptitle=suptitle)
    return fig, read(sims, [lab.numpy() for _, lab, _ in columns[:-1]], photos.shown, grid)


def read(sims: Sequence[float], labels: Sequence[np.ndarray], shown: Sequence[np.ndarray], grid: Sequence[int]
         ) -> Reading:
    """The :class:`Reading` of ToMato's ``labels`` ((B, N) groups per photo, one array per
    sim) on the photos ``shown`` ((H, W, 3) each)."""
    uniform = np.stack([uniform_patches(p, grid) for p in shown])  # (B, N)
    merged = [_in_groups(np.asarray(lab)) for lab in labels]        # (B, N) each
    kept = [float(np.mean([len(np.unique(row)) for row in np.asarray(lab)])) for lab in labels]
    return Reading(list(sims), kept,
                   [float(100 * m[uniform].mean()) if uniform.any() else float("nan") for m in merged],
                   int(uniform.sum()), int(uniform.size))


def _in_groups(labels: np.ndarray) -> np.ndarray:
    """labels: (B, N) group of each patch -> (B, N) bool, True where the group has >= 2 patches."""
    out = np.zeros(labels.shape, dtype=bool)
    for b, row in enumerate(labels):
        sizes = np.bincount(row)
        out[b] = sizes[row] >= 2
    return out
