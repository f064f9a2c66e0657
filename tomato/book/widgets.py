"""Sliders of the walk-through notebooks: the group map of one photo as ``sim`` moves,
and its merged picture as the keep ratio moves.

Two media: :func:`sim_slider` / :func:`keep_slider` are live ipywidgets sliders (they
need a running kernel, so static pages drop them); :func:`sim_frames` /
:func:`keep_frames` pre-draw a few values and :func:`frame_slider` shows them behind an
HTML range control that works in any browser, in JupyterLab and in the built book alike.

Each redraw runs :mod:`tomato.core.pipeline` on the photo's neighbour scores, the same
code the patched model runs. The picture lives in an ``ipywidgets.Image`` (a plain
value) rather than an ``Output`` widget capturing a figure, so nothing waits on a front
end and headless execution (papermill) never blocks. ipywidgets and matplotlib are
imported inside the functions.
"""
from __future__ import annotations

import math
import base64
import html
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..core import pipeline
from .pictures import group_picture, merge_picture


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
    import struct

    import ipywidgets as widgets

    png = render(slider.value)
    width = struct.unpack(">I", png[16:20])[0]  # the PNG's own width (its IHDR chunk)
    # At its own size, not stretched to the output's width (blurry, and taller than the
    # window, so that the slider and the picture's lower half never show together).
    image = widgets.Image(value=png, format="png", layout=widgets.Layout(width=f"{width}px", max_width="100%"))
    # A track wide enough to move by one step at a time (the sim slider spans 60 decades).
    slider.layout = widgets.Layout(width=f"{max(width, 480)}px", max_width="100%")

    def update(change: Mapping[str, Any]) -> None:
        image.value = render(change["new"])

    slider.observe(update, names="value")
    return widgets.VBox([slider, image])



def _grouping(log_scores: torch.Tensor, grid: Sequence[int], settings: pipeline.Settings) -> pipeline.Grouping:
    """log_scores: (N, 4) natural-log neighbour scores of one photo -> its grouping."""
    return pipeline.group_scores(log_scores[None].double(), grid, settings)


def _sim_png(image: np.ndarray, log_scores: torch.Tensor, grid: Sequence[int], title: str, sim: float) -> bytes:
    """The group map of one photo at ``sim`` (faithful visit), as PNG bytes."""
    n = log_scores.shape[0]
    g = _grouping(log_scores, grid, pipeline.Settings(sim=sim))
    k = int(g.counts[0])
    return _png(group_picture(image, g.labels[0], grid),
                f"{title}\nsim = {sim:.1e}: {k} of {n} tokens kept ({100 * (n - k) / n:.1f}% cut)")


def _keep_png(image: np.ndarray, log_scores: torch.Tensor, grid: Sequence[int], title: str,
              keep_ratio: float) -> bytes:
    """The merged picture of one photo at a keep ratio (sim from the budget search), as PNG bytes."""
    n = log_scores.shape[0]
    g = _grouping(log_scores, grid, pipeline.Settings(keep_ratio=keep_ratio))
    return _png(merge_picture(image, g.labels[0], grid),
                f"{title}\nkeep ratio {keep_ratio:.2f}: {int(g.counts[0])} of {n} tokens, "
                f"sim = 1e{float(g.log_sim[0]) / math.log(10):.1f}")


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
    image (:func:`tomato.core.pipeline.neighbour_log_scores`). Returns the widget
    (display it); nothing blocks, so it also runs headless.
    """
    import ipywidgets as widgets

    def render(sim: float) -> bytes:
        return _sim_png(image, log_scores, grid, title, sim)

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
    image (:func:`tomato.core.pipeline.neighbour_log_scores`). Returns the widget
    (display it); nothing blocks, so it also runs headless.
    """
    import ipywidgets as widgets

    def render(keep_ratio: float) -> bytes:
        return _keep_png(image, log_scores, grid, title, keep_ratio)

    slider = widgets.FloatSlider(value=value, min=0.05, max=1.0, step=0.05, description="keep",
                                 readout_format=".2f", continuous_update=False)
    return _slider_view(slider, render)


def frame_slider(frames: Sequence[tuple[str, bytes]], name: str, start: int = 0) -> str:
    """Pre-drawn PNG frames behind an HTML range control; returns the HTML.

    frames: (label, png bytes) in slider order; name: what the slider moves (shown
    before the label); start: the frame shown first. The control is a plain
    ``<input type="range">`` whose handler shows one ``<img>`` at a time, so it works
    without a kernel: in JupyterLab, in the built book, in any browser.
    """
    start = min(max(0, start), len(frames) - 1)
    labels = "|".join(html.escape(label, quote=True) for label, _ in frames)
    show = ("var d=this.parentNode.parentNode,k=+this.value,f=d.getElementsByTagName('img');"
            "for(var i=0;i<f.length;i++){f[i].style.display=i==k?'block':'none';}"
            "d.getElementsByTagName('output')[0].textContent=this.dataset.labels.split('|')[k];")
    imgs = "".join(
        f'<img alt="{html.escape(label, quote=True)}" style="display:{"block" if i == start else "none"};'
        f'max-width:100%" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for i, (label, png) in enumerate(frames))
    return (f'<div class="tomato-frames"><label style="display:flex;gap:0.6em;align-items:center">'
            f'{html.escape(name)} <input type="range" min="0" max="{len(frames) - 1}" step="1" value="{start}" '
            f'data-labels="{labels}" oninput="{show}" style="flex:1;max-width:24em">'
            f'<output>{html.escape(frames[start][0])}</output></label>{imgs}</div>')


def sim_frames(image: np.ndarray, log_scores: torch.Tensor, grid: Sequence[int], sims: Sequence[float],
               title: str = "") -> list[tuple[str, bytes]]:
    """(label, PNG) of the group map of one photo at each ``sim``, for :func:`frame_slider`.

    image: (H, W, 3) in [0, 1]; log_scores: (N, 4) natural-log neighbour scores."""
    return [(f"sim = {s:.0e}", _sim_png(image, log_scores, grid, title, s)) for s in sims]


def keep_frames(image: np.ndarray, log_scores: torch.Tensor, grid: Sequence[int], keep_ratios: Sequence[float],
                title: str = "") -> list[tuple[str, bytes]]:
    """(label, PNG) of the merged picture of one photo at each keep ratio, for :func:`frame_slider`."""
    return [(f"keep = {k:.2f}", _keep_png(image, log_scores, grid, title, k)) for k in keep_ratios]
