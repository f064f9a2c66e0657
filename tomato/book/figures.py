"""The paper's Figure 2 on the model trained here.

The paper's Figure 2 shows pretrained DeiT-B merging uniform backgrounds (a sky, a wall)
into a few large groups at ``sim = 1e-7``. Whether a model does that is a property of its
attention, so the figure is drawn on the committed model and read with one
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
from .paper import sim_for_cut
from .pictures import labels_from_tome_source, merge_picture, picture_grid
from .runs import RecordedRun

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


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
