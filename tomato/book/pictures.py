"""Pictures of photos and their token groups: the maths (group labels -> pixels) and the
matplotlib drawing of photos, heat maps and picture grids.

Conventions: patch tokens are indexed row-major on a ``grid = (h, w)`` patch grid
(``i = r * w + c``); an *image* for display is a float array ``(H, W, 3)`` in ``[0, 1]``
(:func:`to_display` turns a model input back into one); functions that draw on an
existing axes take it as their first argument, functions that make a whole figure return
it. Below: the sliders of the walk-through pages (live, or pre-drawn for any browser).
matplotlib is imported inside the functions that need it.
"""
from __future__ import annotations

import base64
import html
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..core import pipeline, visit

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import nn


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


#: Keep ratios of the merging page's budget grid (two rows of three panels); the page's
#: own ``keep_ratio`` takes the place of the nearest one.
BUDGET_GRID_KEEPS: tuple[float, ...] = (0.9, 0.75, 0.6, 0.45, 0.3, 0.15)


def budget_keep_ratios(keep_ratio: float, keeps: Sequence[float] = BUDGET_GRID_KEEPS) -> list[float]:
    """The budget grid's keep ratios, largest first: ``keeps`` with the one nearest to
    ``keep_ratio`` replaced by it, so the grid always has ``len(keeps)`` panels, none blank."""
    nearest = min(range(len(keeps)), key=lambda k: abs(keeps[k] - keep_ratio))
    return sorted({float(keep_ratio if k == nearest else v) for k, v in enumerate(keeps)}, reverse=True)


def sim_text(log_sim: float) -> str:
    """``sim`` from its natural logarithm, as "sim = 3.2e-115" (any depth: no float underflow)."""
    if not math.isfinite(log_sim):  # +inf: nothing merges; -inf: everything may
        return f"sim = {'inf' if log_sim > 0 else '0'}"
    decades = float(log_sim) / math.log(10)
    exponent = math.floor(decades)
    mantissa = 10 ** (decades - exponent)
    if round(mantissa, 1) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"sim = {mantissa:.1f}e{exponent}"


def budget_grid_title(name: str, keeps: Sequence[float], who: str) -> str:
    """Title of the budget grid of photo ``name``, counting its panels from ``keeps`` (one per
    keep ratio); ``who`` names the model and weights."""
    return f"{name} at {len(keeps)} token budgets ({who})"


# sliders -----------------------------------------------------------------------------------------
# Sliders of the walk-through notebooks: the group map of one photo as ``sim`` moves,
# and its merged picture as the keep ratio moves.
#
# Two media: :func:`sim_slider` / :func:`keep_slider` are live ipywidgets sliders (they
# need a running kernel, so static pages drop them); :func:`sim_frames` /
# :func:`keep_frames` pre-draw a few values and :func:`frame_slider` shows them behind an
# HTML range control that works in any browser, in JupyterLab and in the built book alike.
#
# Each redraw runs :mod:`tomato.core.pipeline` on the photo's neighbour scores, the same
# code the patched model runs. The picture lives in an ``ipywidgets.Image`` (a plain
# value) rather than an ``Output`` widget capturing a figure, so nothing waits on a front
# end and headless execution (papermill) never blocks. ipywidgets and matplotlib are
# imported inside the functions.

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
                f"{title}\nkeep ratio {keep_ratio:.2f}: {int(g.counts[0])} of {n} tokens, " +
                sim_text(float(g.log_sim[0])))


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
