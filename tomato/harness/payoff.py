"""When ToMato pays off: its speed-up against the token cut, beside the ceiling any merge has.

``python -m tomato bench --payoff --sims 1e-3 1e-7 1e-15 1e-30 1e-60 --batch-sizes 1 8``
times, for each batch size and sim, in **one interleaved run** (:func:`tomato.harness.timing.compare`):

- the unpatched forward (the baseline);
- ToMato at that ``sim`` (parallel labelling), on the same photos;
- the *oracle* keeping as many patch tokens after block 0 as ToMato's merged
  sequence has (:func:`tomato.harness.deploy.keep_first`): every later block costs what it
  costs on that length, and the oracle pays nothing to choose them, so it is the ceiling of
  any merge-once method at that cut.

As in the robust protocol (:func:`tomato.harness.speed.measure_variants`), each timed call
takes the next batch of the photos (:func:`tomato.harness.speed.batches`), all three
variants the same one, so a point covers every photo, not the first alone. Each row says,
for one sim and batch, the mean token cut over the photos, the padded length the batches
compute on (mean over them; the oracle keeps that batch's length on each call), and the
speed-up of ToMato and of the oracle (unpatched time / variant time: above 1 is faster)
with paired bootstrap intervals
(:func:`tomato.harness.timing.bootstrap_ratio`). ToMato pays off where its interval lies
above 1; the gap to the oracle is what the merge step costs.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..core import patch
from . import data, deploy, provenance, records, speed, timing

__all__ = ["Point", "run", "record"]


@dataclass(frozen=True)
class Point:
    """One sim at one batch size: the cut and both speed-ups (intervals: paired, 95%)."""

    sim: float
    batch: int
    cut_pct: float          # mean % of patch tokens removed per photo
    tokens_padded: float    # patch tokens a merged batch computes on (its largest group count), mean
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
    embedded smoke photos); the timed calls rotate through their batches of b."""
    patched = patch.timm(copy.deepcopy(model))
    patched.method = "parallel"
    oracle = deploy.keep_first(model, 1)  # its length is set per batch, before each call
    n = int(patched.patch_embed.num_patches)
    photos = data.smoke_images(model, device) if photos is None else photos.to(device)
    points: list[Point] = []
    for b in batch_sizes:
        xs = speed.batches(photos, b)
        for s in sims:
            patched.sim = s
            kept = []  # (B,) patch tokens ToMato keeps, per batch
            with torch.inference_mode():
                for x in xs:
                    patched(x)
                    kept.append(patch.state(patched).tokens.double())
            padded = [int(k.max()) for k in kept]
            # Three variants a run, each its own model, so that each meets the machine (and
            # its caches) as the others do: with a dozen models in one run, the one called
            # twice in a row ran on warm caches and the rest on cold ones.
            stats = timing.compare({"unpatched": _turns(model, xs), "tomato": _turns(patched, xs),
                                    "oracle": _turns(oracle, xs, padded)},
                                   runs=runs, warmup=warmup, sync=timing.device_sync(device), progress=progress,
                                   desc=f"payoff, batch {b}, sim={s:g}")
            base, ours, ceiling = stats["unpatched"], stats["tomato"], stats["oracle"]
            # A speed-up is base / variant: its interval is the inverse of variant / base's.
            lo, hi = timing.bootstrap_ratio(ours.times, base.times)
            olo, ohi = timing.bootstrap_ratio(ceiling.times, base.times)
            cut = float(100 * (n - torch.cat(kept)).mean() / n)
            points.append(Point(s, b, cut, sum(padded) / len(padded), base.median / ours.median, 1 / hi, 1 / lo,
                                base.median / ceiling.median, 1 / ohi, 1 / olo))
    return points


def _turns(m: nn.Module, xs: Sequence[torch.Tensor], keep: Sequence[int] | None = None) -> Any:
    """A timed call of ``m`` on the next of the batches ``xs``; ``keep``: the oracle's
    patch tokens for each batch (:func:`tomato.harness.deploy.keep_tokens`, before the call)."""
    turn = itertools.cycle(range(len(xs)))

    def f() -> Any:
        i = next(turn)
        if keep is not None:
            deploy.keep_tokens(m, keep[i])
        with torch.inference_mode():
            return m(xs[i])
    return f


def record(points: Sequence[Point], out: str | Path, **fields: Any) -> Path:
    """Write ``points`` + provenance as a ``payoff`` record: ``{"rows": [...], "provenance": {...}}``."""
    return records.write("payoff", out, {"rows": [asdict(p) for p in points],
                                         "provenance": provenance.collect(**fields)})
