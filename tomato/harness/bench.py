"""Micro-benchmark of the merge step against a whole forward (``python -m tomato bench``).

Everything is timed in ONE interleaved run (medians, ratios to the unpatched forward), on
CPU at batch 1 by default, with a real photo from the embedded smoke set:

* the unpatched forward of the model;
* the merge step alone (similarity -> visit -> merge) on that image's block-0 features:
  faithful, parallel, and a *reference-style* loop that, like the authors' code, recurses
  in Python with one torch indexing op per token (the "plain Python loop" to beat);
* patched forwards at a few ``sim`` / ``keep_ratio`` values with the tokens each keeps.

Random-init weights are fine for speed (the FLOPs do not depend on the values), but
their features merge differently from a trained model's, which is why the merge step is
also timed at a threshold chosen to keep about 85% of the tokens.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..core import pipeline, probe, similarity, visit
from . import data, models, timing
from ..core.budget import search_sim
from .evaluate import token_stats
from .variants import parse


def reference_style_merge(x: torch.Tensor, sim: float, grid: tuple[int, int], num_prefix: int) -> torch.Tensor:
    """The authors' structure: recursive Python visit, one torch op per token and test.

    x: (1, T, C) -> (1, P + G, C). Used only as the baseline the faithful visit must beat.
    """
    h, w = grid
    p = x[0, num_prefix:]
    a = similarity.feature_distribution(p[None])[0]
    n = p.shape[0]
    visited = torch.zeros(n, dtype=torch.bool)
    groups: list[list[int]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * n))

    def visit_(i: int, group: list[int]) -> None:
        visited[i] = True
        group.append(i)
        r, c = divmod(i, w)
        for j, ok in ((i - 1, c > 0), (i + 1, c < w - 1), (i - w, r > 0), (i + w, r < h - 1)):
            if ok and not visited[j] and a[i, j] >= sim:
                visit_(j, group)

    for i in range(n):
        if not visited[i]:
            g: list[int] = []
            visit_(i, g)
            groups.append(g)
    merged = torch.stack([p[g].mean(dim=0) for g in groups])
    return torch.cat([x[0, :num_prefix], merged])[None]


@dataclass
class Row:
    name: str
    median_ms: float
    iqr_ms: float
    ratio: float  # median / unpatched forward median
    tokens: float | None = None


def run(model_name: str = "deit_base_patch16_224", runs: int = 30, warmup: int = 5,
        device: str = "cpu", threads: int | None = None) -> list[Row]:
    """Time everything listed in the module docstring; returns one Row per measurement."""
    if threads:
        torch.set_num_threads(threads)
    model, _ = models.load(model_name, pretrained=False, seed=0, device=device)
    sample = data.smoke_samples()[0]
    image = data.transform_for(model)(data.load_image(sample.path))[None].to(device)
    x = probe.block0(model, image).x
    grid = tuple(model.patch_embed.grid_size)
    p = model.num_prefix_tokens
    # A threshold that keeps ~85% of the tokens on this image, so the visit has real work.
    scores = visit.neighbour_scores(similarity.distribution("features", x, p), grid)
    sim85 = float(search_sim(scores, grid, math.ceil(0.85 * grid[0] * grid[1]), "parallel")[0])

    fns: dict[str, Callable[[], Any]] = {}
    plain = model

    def forward(spec: str) -> Callable[[], Any]:
        v = parse(spec)

        def f() -> Any:
            v.apply(plain)
            with torch.inference_mode():
                return plain(image)
        return f

    fns["forward: unpatched"] = forward("deit")
    for s, label in ((1e-7, "sim=1e-7"), (sim85, "sim@85%")):
        for method in ("faithful", "parallel"):
            cfg = pipeline.Settings(sim=s, method=method)
            fns[f"merge step: {method}, {label}"] = (
                lambda cfg=cfg: pipeline.merge_at_once(x, cfg, grid, p))
        fns[f"merge step: reference-style loop, {label}"] = (
            lambda s=s: reference_style_merge(x, s, grid, p))
    specs = ["tomato:sim=1e-7", "tomato:sim=1e-7,method=parallel", "tomato:keep=0.85",
             "tomato:keep=0.85,method=parallel", "tomato:keep=0.7,method=parallel",
             "tomato:keep=0.5,method=parallel", "tome:r=2", "tome:r=8"]
    tokens: dict[str, float] = {}
    for name, fn in fns.items():
        if name.startswith("merge step"):
            out = fn()
            merged = out.merged.x if isinstance(out, pipeline.Step) else out
            tokens[name] = float(merged.shape[1] - p)
    for spec in specs:
        name = f"forward: {parse(spec).label}"
        fns[name] = forward(spec)
        fns[name]()
        tokens[name] = float(token_stats(plain, 1)[0][0])
    stats = timing.compare(fns, runs=runs, warmup=warmup, sync=timing.device_sync(device))
    base = stats["forward: unpatched"].median
    rows = []
    for name, s in stats.items():
        rows.append(Row(name, s.median * 1e3, s.iqr * 1e3, s.median / base,
                        tokens.get(name, 196.0 if name == "forward: unpatched" else None)))
    return rows


def format_rows(rows: list[Row], header: str = "") -> str:
    """A plain-text table of :func:`run`'s rows."""
    lines = [header] if header else []
    lines.append(f"{'measurement':48s} {'median ms':>10s} {'IQR ms':>8s} {'x forward':>10s} {'tokens':>7s}")
    for r in rows:
        tok = "" if r.tokens is None else f"{r.tokens:.0f}"
        lines.append(f"{r.name:48s} {r.median_ms:10.3f} {r.iqr_ms:8.3f} {r.ratio:10.4f} {tok:>7s}")
    return "\n".join(lines)
