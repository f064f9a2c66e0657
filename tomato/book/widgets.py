"""Interactive sliders of the walk-through notebooks (ipywidgets): the group map of one
photo as ``sim`` moves, and its merged picture as the keep ratio moves.

Each redraw runs :mod:`tomato.core.pipeline` on the photo's neighbour scores, the same
code the patched model runs. The picture lives in an ``ipywidgets.Image`` (a plain
value) rather than an ``Output`` widget capturing a figure, so nothing waits on a front
end and headless execution (papermill) never blocks. ipywidgets and matplotlib are
imported inside the functions.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

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
    import ipywidgets as widgets

    image = widgets.Image(value=render(slider.value), format="png")

    def update(change: Mapping[str, Any]) -> None:
        image.value = render(change["new"])

    slider.observe(update, names="value")
    return widgets.VBox([slider, image])



def _grouping(log_scores: torch.Tensor, grid: Sequence[int], settings: pipeline.Settings) -> pipeline.Grouping:
    """log_scores: (N, 4) natural-log neighbour scores of one photo -> its grouping."""
    return pipeline.group_scores(log_scores[None].double(), grid, settings)


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

    n = log_scores.shape[0]

    def render(sim: float) -> bytes:
        g = _grouping(log_scores, grid, pipeline.Settings(sim=sim))
        k = int(g.counts[0])
        return _png(group_picture(image, g.labels[0], grid),
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
    image (:func:`tomato.core.pipeline.neighbour_log_scores`). Returns the widget
    (display it); nothing blocks, so it also runs headless.
    """
    import ipywidgets as widgets

    n = log_scores.shape[0]

    def render(keep_ratio: float) -> bytes:
        g = _grouping(log_scores, grid, pipeline.Settings(keep_ratio=keep_ratio))
        return _png(merge_picture(image, g.labels[0], grid),
                    f"{title}\nkeep ratio {keep_ratio:.2f}: {int(g.counts[0])} of {n} tokens, "
                    f"sim = 1e{float(g.log_sim[0]) / math.log(10):.1f}")

    slider = widgets.FloatSlider(value=value, min=0.05, max=1.0, step=0.05, description="keep",
                                 readout_format=".2f", continuous_update=False)
    return _slider_view(slider, render)
