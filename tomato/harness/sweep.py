"""Sweeps for the accuracy-latency figures: one tidy CSV over many variants.

``sweep`` evaluates every variant (each in its own resumable run folder), then times all
of them in one interleaved run (or reuses a finished timing run with the same identity),
and writes ``sweep.csv`` with one row per variant: kind, parameter, value, top-1, top-5,
token statistics, latency (median, IQR, speed-up with its bootstrap interval; timed on a
few of the images, whose mean token count is ``tokens_timed``), throughput, and FLOPs
from the evaluation's mean token count.
"""
from __future__ import annotations

import csv
import io
import inspect
import logging
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import data, provenance, records
from .evaluate import evaluate
from .flops import model_flops
from .models import WeightsInfo
from .results import atomic_write_text, claim_folder, remove_if_created
from .speed import measure_variants
from .variants import PAPER_SIMS, Variant, parse

log = logging.getLogger(__name__)
#: What :func:`sweep` passes on to every evaluation: evaluate's own keywords, defaults included.
_EVALUATE = inspect.signature(evaluate)

#: Figure 3's axes: ToMe sweeping r, ToMato sweeping sim, plus our parallel and budget modes.
DEFAULT_VARIANTS: tuple[str, ...] = (
    "deit",
    "tome:r=1", "tome:r=2", "tome:r=4", "tome:r=8", "tome:r=16",
    *(f"tomato:sim={s:g}" for s in PAPER_SIMS),   # the paper's Figure 3 thresholds
    "tomato:sim=1e-7,method=parallel",
    "tomato:keep=0.9", "tomato:keep=0.8", "tomato:keep=0.7", "tomato:keep=0.5",
)

COLUMNS: tuple[str, ...] = (
    "variant", "label", "kind", "parameter", "value", "top1", "top5", "n_images", "n_bad",
    "tokens_mean", "tokens_min", "tokens_max", "tokens_timed", "median_s", "iqr_s",
    "throughput_img_s", "speedup", "speedup_low", "speedup_high", "gflops", "ideal_speedup", "pretrained",
    "weights_source",
)


def slug(variant: Variant) -> str:
    """A folder name for a variant's run: ``tomato_sim-1e-07``."""
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", variant.spec.replace("=", "-").replace(":", "_"))


def timing_images(samples: Sequence[data.Sample], model: nn.Module, count: int = 8) -> torch.Tensor:
    """(M, 3, H, W): the first ``count`` readable images, preprocessed for ``model``."""
    ds = data.ImageNetFolder(list(samples), data.transform_for(model))
    out = []
    for i in range(len(ds)):
        item = ds[i]
        if item:
            out.append(item[0])
        if len(out) == count:
            break
    if not out:
        raise ValueError("no readable image to time the variants on")
    return torch.stack(out)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def sweep(
    model: nn.Module,
    weights: WeightsInfo,
    variants: Sequence[str | Variant],
    samples: Sequence[data.Sample],
    out: Path | str,
    *,
    time_runs: int = 10,
    time_warmup: int = 2,
    **evaluation: Any,
) -> list[dict[str, Any]]:
    """Evaluate and time ``variants``; returns the rows written to ``out/sweep.csv``.

    ``evaluation``: the keywords of :func:`tomato.harness.evaluate.evaluate` (``data_label``,
    ``batch_size``, ``device``, ``progress``, ...), the same for every variant; the timing
    runs on the same device. ``out`` is locked for the whole sweep (a second sweep into it
    gets RunFolderBusy); each variant's run folder below it has its own lock.
    """
    vs = [parse(v) for v in variants]
    # One signature, evaluate's: a missing or unknown keyword is refused before any folder is made.
    bound = _EVALUATE.bind(model, weights, None, samples, out, **evaluation)
    bound.apply_defaults()
    evaluation = {k: bound.arguments[k] for k, p in _EVALUATE.parameters.items() if p.kind is p.KEYWORD_ONLY}
    out, created, lock = claim_folder(out)
    try:
        _check_sweep_folder(out)
        return _sweep(model, weights, vs, samples, out, evaluation, time_runs=time_runs,
                      time_warmup=time_warmup)
    finally:
        lock.release()
        remove_if_created(out, created)  # only if the sweep left nothing in it


def _check_sweep_folder(out: Path) -> None:
    """ValueError when ``out`` holds files other than a sweep's own (sub-folders are left to
    the run folders' own check, which refuses one that is not a run of ours)."""
    ours = {".lock", "sweep.csv", "timing.json"}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.is_dir())
    if foreign:
        raise ValueError(f"--out {out} holds files that are not a sweep's ({', '.join(foreign[:5])}); nothing "
                         f"was touched: choose a new or empty folder")


def _sweep(model: nn.Module, weights: WeightsInfo, vs: Sequence[Variant], samples: Sequence[data.Sample],
           out: Path, evaluation: dict[str, Any], *, time_runs: int, time_warmup: int) -> list[dict[str, Any]]:
    """The body of :func:`sweep`, run while ``out`` is locked."""
    device, data_label = evaluation["device"], evaluation["data_label"]
    summaries = {}
    for v in vs:
        summaries[v.spec] = evaluate(model, weights, v, samples, out / slug(v), **evaluation)

    images = timing_images(samples, model)
    timed = timed_rows(model, weights, vs, images, out / "timing.json", runs=time_runs, warmup=time_warmup,
                       device=device, data_label=data_label, progress=evaluation["progress"])
    return write_table(model, vs, summaries, timed, out)


def timed_rows(model: nn.Module, weights: WeightsInfo, vs: Sequence[Variant], images: torch.Tensor,
               path: Path, *, runs: int, warmup: int, device: str | torch.device, data_label: str,
               progress: bool = True, started: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Batch-1 timing rows of ``vs`` on ``images`` (M, 3, H, W), one interleaved run,
    recorded at ``path`` (a timing record); a stored record made exactly so is reused."""
    # The config says everything a page writes about this timing (speed.describe); a
    # stored timing is reused only when it was made exactly so.
    timing_config = {"protocol": "robust", "model": weights.model, "weights_sha256": weights.sha256,
                     "variants": [v.spec for v in vs], "runs": runs, "warmup": warmup,
                     "device": str(device), "threads": torch.get_num_threads() if str(device) == "cpu" else None,
                     "data": data_label, "images": len(images), "batch_size": 1}
    stored = records.read("timing", path)
    if stored is not None and stored["config"] == timing_config:
        log.info("reusing timing run in %s", path)
        return stored["rows"]
    started = started or provenance.start()  # the code and commit as the timing starts
    timed = measure_variants(model, vs, images, runs=runs, warmup=warmup, device=device, progress=progress)
    record = {"config": timing_config, "rows": timed, "provenance": provenance.collect(started, **timing_config)}
    records.write("timing", path, record)
    return timed


def write_table(model: nn.Module, vs: Sequence[Variant], summaries: dict[str, dict[str, Any]],
                timed: Sequence[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """``out/sweep.csv``: one row per variant from its evaluation summary and its timing row."""
    by_spec = {r["variant"]: r for r in timed}
    # FLOPs from the tokens each variant kept over the whole evaluation, not only over
    # the few images that were timed.
    base_flops = model_flops(model, vs[0], summaries[vs[0].spec]["tokens_mean"])

    rows = []
    for v in vs:
        s, t = summaries[v.spec], by_spec[v.spec]
        name, value = v.parameter
        rows.append({
            "variant": v.spec, "label": v.label, "kind": v.kind, "parameter": name, "value": value,
            **{k: s.get(k) for k in ("top1", "top5", "n_images", "n_bad", "tokens_mean",
                                     "tokens_min", "tokens_max", "pretrained", "weights_source")},
            **{k: t.get(k) for k in ("median_s", "iqr_s", "throughput_img_s", "speedup", "speedup_low",
                                     "speedup_high")},
            "tokens_timed": t.get("tokens_mean"),
        })
        flops = model_flops(model, v, s["tokens_mean"])
        rows[-1].update(gflops=flops / 1e9, ideal_speedup=base_flops / flops)
    _write_csv(out / "sweep.csv", rows, COLUMNS)
    return rows
