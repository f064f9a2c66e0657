"""Latency and throughput of variants, measured in ONE run so that ratios are fair.

Two protocols side by side:

``paper``
    What the paper reports: batch 1, no warm-up, the mean of 10 inferences (the authors
    timed them with Nsight Systems on a Jetson Nano).
``robust``
    Warm-up, then ``runs`` timed forwards with the variants interleaved round-robin (so
    drift on a shared machine hits every variant alike), CUDA synchronised around each
    call; we report the median and interquartile range.

Each row also carries a theoretical column: FLOPs from the tokens each variant actually
kept on the timed images, so a measured speed-up can be set against the ideal one.
"""
from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import flops, timing
from .evaluate import token_stats
from .variants import Variant, parse

log = logging.getLogger(__name__)


def variant_flops(dims: flops.ViTDims, variant: Variant, kept_patches: float) -> float:
    """FLOPs of one image through a ViT of shape ``dims`` as ``variant``, keeping
    ``kept_patches`` patch tokens after block 0 (ToMato; ToMe's schedule is fixed by r)."""
    if variant.kind == "tome":
        return flops.vit_flops(dims, flops.tokens_schedule_tome(dims, variant.get("r", 0)))
    if variant.kind == "tomato":
        kept = min(max(1.0, kept_patches), dims.num_patches)
        return flops.vit_flops(dims, flops.tokens_schedule_tomato(dims, kept),
                               extra=flops.tomato_merge_flops(dims))
    return flops.vit_flops(dims, flops.tokens_schedule_tomato(dims, dims.num_patches))


def theoretical_flops(model: nn.Module, variant: Variant, kept_patches: float) -> float:
    """:func:`variant_flops` for ``model``'s own shape."""
    return variant_flops(flops.dims_of(model), variant, kept_patches)


def batches(images: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every distinct batch of ``size`` consecutive images, cycling through ``images``.

    images: (M, 3, H, W) -> M batches (B, 3, H, W) starting at image 0, B, 2B, ... (mod M).
    ToMato's cost depends on the image, so timed calls rotate through these instead of
    repeating one picture.
    """
    m = images.shape[0]
    idx = torch.arange(m * size).remainder(m).view(m, size)
    return [images[row] for row in idx]


def measure_variants(
    model: nn.Module,
    variants: Sequence[Variant | str],
    images: torch.Tensor,
    *,
    batch_sizes: Sequence[int] = (1,),
    runs: int = 20,
    warmup: int = 3,
    paper_n: int = 10,
    device: str | torch.device = "cpu",
    clock: Callable[[], float] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Time every variant at every batch size; returns tidy rows (one per variant x batch).

    images: (M, 3, H, W) preprocessed inputs; each timed call takes the next of the M
    :func:`batches`, so medians and token counts cover every image.
    Row keys: variant, label, batch_size, paper_mean_s, median_s, q1_s, q3_s, iqr_s,
    runs, throughput_img_s, speedup (median ratio vs the first variant), tokens_mean
    (over the timed images), gflops (per image, from those tokens), ideal_speedup.
    """
    vs = [parse(v) for v in variants]
    clock = clock or time.perf_counter
    sync = timing.device_sync(device)
    model = model.to(device).eval()
    rows: list[dict[str, Any]] = []
    for bs in tqdm(batch_sizes, desc="batch sizes", disable=not progress or len(batch_sizes) == 1):
        xs = [b.to(device) for b in batches(images, bs)]

        def make(v: Variant) -> Callable[[], object]:
            turn = itertools.cycle(xs)

            def run() -> object:
                # Applying a variant only swaps Python classes (microseconds), so it can sit
                # inside the timed call and let the variants interleave on one model.
                v.apply(model)
                with torch.inference_mode(), timing.nvtx_range(v.spec):
                    return model(next(turn))
            return run

        fns = {v.spec: make(v) for v in vs}
        kept: dict[str, float] = {}
        for v in vs:
            counts = []
            for _ in xs:  # one pass over every batch: the tokens this variant keeps
                fns[v.spec]()
                counts += token_stats(model, bs)[0]
            kept[v.spec] = sum(counts) / len(counts)
        paper = {}
        if bs == 1 and paper_n:
            for v in vs:
                paper[v.spec] = timing.paper_protocol(fns[v.spec], n=paper_n, clock=clock, sync=sync)
        stats = timing.compare(fns, runs=runs, warmup=warmup, clock=clock, sync=sync)
        base = vs[0].spec
        base_flops = theoretical_flops(model, vs[0], kept[base])
        for v in vs:
            s = stats[v.spec]
            f = theoretical_flops(model, v, kept[v.spec])
            rows.append({
                "variant": v.spec, "label": v.label, "batch_size": bs,
                "paper_mean_s": paper.get(v.spec),
                "median_s": s.median, "q1_s": s.q1, "q3_s": s.q3, "iqr_s": s.iqr, "runs": s.n,
                "throughput_img_s": bs / s.median,
                "speedup": stats[base].median / s.median,
                "tokens_mean": kept[v.spec],
                "gflops": f / 1e9,
                "ideal_speedup": base_flops / f,
            })
    if vs:
        vs[0].apply(model)
    return rows
