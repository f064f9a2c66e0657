"""When ToMato pays off: its speed-up against the token cut, beside the ceiling any merge has.

``python -m tomato bench --payoff --sims 1e-3 1e-7 1e-15 1e-30 1e-60 --batch-sizes 1 8``
times, for each batch size and sim, in **one interleaved run** (:func:`tomato.harness.timing.compare`):

- the unpatched forward (the baseline);
- ToMato at that ``sim`` (parallel labelling), on the same photos;
- the *oracle* keeping as many patch tokens after block 0 as ToMato's merged
  sequence has (:func:`tomato.harness.deploy.keep_first`): every later block costs what it
  costs on that length, and the oracle pays nothing to choose them, so it is the ceiling of
  any merge-once method at that cut.

Each row says, for one sim and batch, the mean token cut over the photos, the padded
length the batch computes on, and the speed-up of ToMato and of the oracle (unpatched
time / variant time: above 1 is faster) with paired bootstrap intervals
(:func:`tomato.harness.timing.bootstrap_ratio`). ToMato pays off where its interval lies
above 1; the gap to the oracle is what the merge step costs.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..core import patch
from . import data, deploy, provenance, records, timing

__all__ = ["Point", "run", "record"]


@dataclass(frozen=True)
class Point:
    """One sim at one batch size: the cut and both speed-ups (intervals: paired, 95%)."""

    sim: float
    batch: int
    cut_pct: float          # mean % of patch tokens removed per photo
    tokens_padded: int      # patch tokens the merged batch computes on (its largest group count)
    speedup: float          # unpatched / ToMato
    speedup_low: float
    speedup_high: float
    oracle_speedup: float   # unpatched / oracle keeping tokens_padded
    oracle_low: float
    oracle_high: float


def run(model: nn.Module, sims: Sequence[float], batch_sizes: Sequence[int] = (1, 8), *, runs: int = 30,
        warmup: int = 5, device: str = "cpu", progress: bool = False,
        photos: torch.Tensor | None = None) -> list[Point]:
    """The payoff points of ``model`` (unpatched, on ``device``; left unchanged) at each of
    ``sims`` and batch sizes. photos: (P, 3, H, W) as the model reads them (default: the
    embedded smoke photos); a batch of b repeats them, so batch 1 times the first."""
    patched = patch.timm(copy.deepcopy(model))
    patched.method = "parallel"
    n = int(patched.patch_embed.num_patches)
    photos = data.smoke_images(model, device) if photos is None else photos.to(device)
    points: list[Point] = []
    for b in batch_sizes:
        images = photos[torch.arange(b) % len(photos)]

        def forward(m: nn.Module) -> Any:
            def f() -> Any:
                with torch.inference_mode():
                    return m(images)
            return f

        for s in sims:
            patched.sim = s
            with torch.inference_mode():
                patched(images)
            tokens = patch.state(patched).tokens.double()
            cut, padded = float(100 * (n - tokens).mean() / n), int(tokens.max())
            # Three variants a run, so that each meets the machine (and its caches) as the
            # others do: with a dozen models in one run, the one called twice in a row
            # (the shared patched model) ran on warm caches and the rest on cold ones.
            stats = timing.compare({"unpatched": forward(model), "tomato": forward(patched),
                                    "oracle": forward(deploy.keep_first(model, padded))},
                                   runs=runs, warmup=warmup, sync=timing.device_sync(device), progress=progress,
                                   desc=f"payoff, batch {b}, sim={s:g}")
            base, ours, ceiling = stats["unpatched"], stats["tomato"], stats["oracle"]
            # A speed-up is base / variant: its interval is the inverse of variant / base's.
            lo, hi = timing.bootstrap_ratio(ours.times, base.times)
            olo, ohi = timing.bootstrap_ratio(ceiling.times, base.times)
            points.append(Point(s, b, cut, padded, base.median / ours.median, 1 / hi, 1 / lo,
                                base.median / ceiling.median, 1 / ohi, 1 / olo))
    return points


def record(points: Sequence[Point], out: str | Path, **fields: Any) -> Path:
    """Write ``points`` + provenance as a ``payoff`` record: ``{"rows": [...], "provenance": {...}}``."""
    return records.write("payoff", out, {"rows": [asdict(p) for p in points],
                                         "provenance": provenance.collect(**fields)})
