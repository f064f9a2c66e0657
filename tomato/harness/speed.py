"""Timing variants on a model, in either protocol of :mod:`tomato.harness.timing`.

* :func:`measure_variants` -- the robust protocol: every variant in one interleaved run,
  at one or more batch sizes, with medians, IQRs and a bootstrap interval on each
  speed-up. Each row also carries FLOPs from the tokens the variant actually kept on the
  timed images, so a measured speed-up can be set against the ideal one.
* :func:`paper_protocol` -- the authors' protocol: one image, 11 forwards at batch 1 per
  variant, no warm-up, CPU threads settable (4 on a Jetson Nano), NVTX ranges named as in
  their profiles, and the merge step's own time in each forward.

:func:`describe` turns a run's recorded configuration into the sentence a page prints
about it, so no prose about a run is typed by hand.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import data, flops, ranges, timing
from .evaluate import token_stats
from .timing import MIN_RUNS, PAPER_FORWARDS
from .variants import Variant, parse

log = logging.getLogger(__name__)


def batches(images: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every distinct batch of ``size`` consecutive images, cycling through ``images``.

    images: (M, 3, H, W) -> M / gcd(M, B) batches (B, 3, H, W) starting at image 0, B, 2B,
    ... (mod M): after that many the batches repeat (16 images in batches of 8 are two
    batches, not sixteen), and every image appears equally often among them. ToMato's
    cost depends on the image, so timed calls rotate through these instead of repeating
    one picture.
    """
    m = images.shape[0]
    distinct = m // math.gcd(m, size)
    idx = torch.arange(distinct * size).remainder(m).view(distinct, size)
    return [images[row] for row in idx]


def measure_variants(
    model: nn.Module,
    variants: Sequence[Variant | str],
    images: torch.Tensor,
    *,
    batch_sizes: Sequence[int] = (1,),
    runs: int = MIN_RUNS,
    warmup: int = 5,
    budget_s: float | None = None,
    device: str | torch.device = "cpu",
    clock: Callable[[], float] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The robust protocol for every variant at every batch size; tidy rows (variant x batch).

    images: (M, 3, H, W) preprocessed inputs; each timed call takes the next of the M
    :func:`batches`, so medians and token counts cover every image.
    Row keys: protocol ("robust"), variant, label, batch_size, images (M), median_s, q1_s,
    q3_s, iqr_s, runs, warmup, throughput_img_s, speedup (baseline median / variant median,
    the first variant being the baseline) with its 95% bootstrap interval speedup_low /
    speedup_high (rounds resampled in pairs), tokens_mean (over the timed images), gflops
    (per image, from those tokens), ideal_speedup, times_s (every timed call, round by round).
    """
    vs = [parse(v) for v in variants]
    clock = clock or time.perf_counter
    sync = timing.device_sync(device)
    binding = ranges.find_binding()
    model = model.to(device).eval()
    rows: list[dict[str, Any]] = []
    for bs in tqdm(batch_sizes, desc="batch sizes", disable=not progress or len(batch_sizes) == 1):
        xs = [b.to(device) for b in batches(images, bs)]

        def make(v: Variant) -> Callable[[], object]:
            turn = itertools.cycle(xs)

            def run() -> object:
                with torch.inference_mode(), ranges.nvtx_range(v.spec, binding):
                    return model(next(turn))
            return run

        fns = {v.spec: make(v) for v in vs}
        # The variants interleave on one model: each call is preceded, untimed, by applying
        # its variant (patching costs a few hundred microseconds, which no user pays per
        # forward, and would bill ToMato and ToMe alone).
        setups = {v.spec: functools.partial(v.apply, model) for v in vs}
        kept: dict[str, float] = {}
        for v in vs:
            counts = []
            v.apply(model)
            for _ in xs:  # one pass over every batch: the tokens this variant keeps
                fns[v.spec]()
                counts += token_stats(model, bs)[0]
            kept[v.spec] = sum(counts) / len(counts)
        stats = timing.compare(fns, runs=runs, warmup=warmup, budget_s=budget_s, clock=clock, sync=sync,
                               setup=setups)
        base = vs[0].spec
        base_flops = flops.model_flops(model, vs[0], kept[base])
        for v in vs:
            s = stats[v.spec]
            f = flops.model_flops(model, v, kept[v.spec])
            # speed-up = base / variant, so its interval is the inverse of the ratio's.
            lo, hi = timing.bootstrap_ratio(s.times, stats[base].times)
            rows.append({
                "protocol": "robust", "variant": v.spec, "label": v.label, "batch_size": bs,
                "images": int(images.shape[0]),
                "median_s": s.median, "q1_s": s.q1, "q3_s": s.q3, "iqr_s": s.iqr,
                "runs": s.n, "warmup": warmup,
                "throughput_img_s": bs / s.median,
                "speedup": stats[base].median / s.median,
                "speedup_low": 1.0 / hi, "speedup_high": 1.0 / lo,
                "tokens_mean": kept[v.spec],
                "gflops": f / 1e9,
                "ideal_speedup": base_flops / f,
                "times_s": list(s.times),  # round by round, so any pair's ratio can be bootstrapped
            })
    if vs:
        vs[0].apply(model)
    return rows


def paper_image(samples: Sequence[data.Sample], index: int, model: nn.Module) -> tuple[torch.Tensor, str]:
    """The paper protocol's one picture: (3, H, W) sample ``index`` preprocessed for
    ``model``, and its path (for the record). ValueError naming the index when unusable."""
    if not 0 <= index < len(samples):
        raise ValueError(f"image index {index} is out of range: the data holds {len(samples)} images "
                         f"(0..{len(samples) - 1})")
    item = data.ImageNetFolder([samples[index]], data.transform_for(model))[0]
    if not item:
        raise ValueError(f"image index {index}: {samples[index].path} cannot be decoded; pick another index")
    return item[0], str(samples[index].path)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the ``with`` body with ``threads`` CPU threads (None: leave torch's), then restore."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def paper_protocol(
    model: nn.Module,
    variants: Sequence[Variant | str],
    image: torch.Tensor,
    *,
    forwards: int = PAPER_FORWARDS,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    clock: Callable[[], float] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The authors' protocol for each variant in turn: ``forwards`` forwards of ``image``.

    image: (3, H, W) or (1, 3, H, W), one preprocessed picture, batch 1. No warm-up; each
    forward sits in an NVTX range ``Forward i`` with the stages named as in the authors'
    profiles (:func:`tomato.harness.ranges.paper_ranges`). The variants run one after
    another, as the authors ran one report per setting. Returns one row per forward:
    protocol ("paper"), variant, label, forward, seconds, merge_s (the merge step: ToMato's in
    block 0, ToMe's summed over blocks; 0 without one), tokens (patch tokens after block 0), threads, device.
    """
    x = image if image.ndim == 4 else image[None]
    if x.shape[0] != 1:
        raise ValueError(f"the paper protocol times one image at batch 1, got a batch of {x.shape[0]}")
    vs = [parse(v) for v in variants]
    clock = clock or time.perf_counter
    sync = timing.device_sync(device)
    binding = ranges.find_binding()
    model = model.to(device).eval()
    x = x.to(device)
    rows: list[dict[str, Any]] = []
    with torch_threads(threads) as used, torch.inference_mode():
        for v in tqdm(vs, desc="paper protocol", disable=not progress):
            v.apply(model)
            stages = ranges.StageTimes(binding, sync=sync)
            per_forward: list[tuple[float, int]] = []

            def forward(i: int) -> None:
                stages.reset()
                with ranges.nvtx_range(f"Forward {i}", binding):
                    model(x)
                per_forward.append((stages.seconds.get(ranges.MERGE_RANGE, 0.0),
                                    token_stats(model, 1)[0][0]))

            with ranges.paper_ranges(model, stages):
                stats = timing.paper_forwards(forward, n=forwards, clock=clock, sync=sync)
            for i, (t, (merge_s, tokens)) in enumerate(zip(stats.times, per_forward)):
                rows.append({"protocol": "paper", "variant": v.spec, "label": v.label, "forward": i,
                             "seconds": t, "merge_s": merge_s, "tokens": int(tokens),
                             "threads": used, "device": str(device)})
    if vs:
        vs[0].apply(model)
    return rows


def paper_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per variant of :func:`paper_protocol` rows: what the authors' reports show.

    mean_s (the paper's number: mean of all forwards), mean_after_first_s, median_s, sd_s,
    min_s, max_s, merge_ms (median merge step), merge_share (median of merge_s / seconds),
    forwards, tokens.
    """
    order: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        order.setdefault(r["variant"], []).append(r)
    out = []
    for spec, rs in order.items():
        s = timing.TimingStats([float(r["seconds"]) for r in rs])
        rest = timing.TimingStats(s.times[1:]) if s.n > 1 else s
        merge = timing.TimingStats([float(r["merge_s"]) for r in rs])
        share = timing.TimingStats([float(r["merge_s"]) / float(r["seconds"]) for r in rs])
        out.append({"variant": spec, "label": rs[0]["label"], "forwards": s.n, "mean_s": s.mean,
                    "mean_after_first_s": rest.mean, "median_s": s.median, "sd_s": s.sd,
                    "min_s": s.min, "max_s": s.max, "merge_ms": 1e3 * merge.median,
                    "merge_share": share.median, "tokens": rs[-1]["tokens"]})
    return out


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def run_config(protocol: str, weights: Any, data_label: str, variants: Sequence[str], device: str,
               threads: int | None) -> dict[str, Any]:
    """What a timing record says about its run (``weights``: a WeightsInfo); the protocol's own
    keys (images, batch sizes, rounds ...) are added by the caller. :func:`describe` reads it."""
    return {"protocol": protocol, "model": weights.model, "weights_source": weights.source,
            "weights_sha256": weights.sha256, "pretrained": weights.pretrained, "data": data_label,
            "variants": list(variants), "device": device, "threads": threads}


def describe(config: Mapping[str, Any]) -> str:
    """One sentence about a timing run, written from its recorded ``config`` only.

    Understands the keys :func:`tomato.harness.cli.cmd_time` records: protocol, device,
    threads, variants, images, image, forwards, runs, warmup, budget_s, batch_sizes.
    """
    c = dict(config)
    device = c.get("device", "?")
    threads = c.get("threads")
    where = f"{device}" + (f", {_plural(threads, 'CPU thread')}" if threads else "")
    variants = c.get("variants") or []
    if c.get("protocol") == "paper":
        image = Path(str(c["image"])).name if c.get("image") else ""
        return (f"Paper protocol (the authors'): one image{f' ({image})' if image else ''}, "
                f"{_plural(c.get('forwards', '?'), 'forward')} at batch 1 per variant, no warm-up, "
                f"variants one after another ({len(variants)}), on {where}; the latency is the mean per forward.")
    budget = c.get("budget_s")
    runs = (f"at least {c.get('runs', '?')} timed rounds and {budget:g} s of them" if budget
            else f"{c.get('runs', '?')} timed rounds")
    sizes = c.get("batch_sizes") or [c.get("batch_size", 1)]
    images = _plural(c["images"], "image") if "images" in c else "the timed images (how many was not recorded)"
    body = (f"{_plural(c.get('warmup', '?'), 'untimed warm-up round')}, then {runs}, "
            f"the {len(variants)} variants interleaved round-robin, each call rotating through {images}, "
            f"batch size {', '.join(str(b) for b in sizes)}, on {where}")
    if c.get("protocol") == "robust":
        return f"Robust protocol (ours): {body}; medians, with 95% bootstrap intervals on speed-ups."
    # Records from before the protocol was stored: say only what they hold.
    return f"Interleaved timing (an older record that names no protocol): {body}; medians."


def at_batch(rows: Iterable[Mapping[str, Any]], batch: int = 1) -> list[Mapping[str, Any]]:
    """The rows of a timing record at batch size ``batch``; a row that names none is from
    before batch sizes were recorded, so batch 1."""
    return [r for r in rows if int(r.get("batch_size", 1)) == batch]


def save_timing(path: Path | str, rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> Path:
    """Write timing rows as a timing record (``config``, ``rows``, ``provenance``), the
    kind ``python -m tomato time`` and a sweep write, so a notebook's measurement is kept
    with the machine it ran on. Returns the file's path."""
    from . import provenance, records

    record = {"config": dict(config), "rows": list(rows), "provenance": provenance.collect(**config)}
    return records.write("timing", path, record)
