"""Accuracy runs: top-1/top-5 and token statistics of one variant on an image set.

Results go to a :class:`tomato.harness.results.RunStore` folder, one batch at a time with atomic
writes, so an interrupted run resumes where it stopped, and a folder holding another
run's results is refused instead of mixed.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import data, flops, provenance
from ..core import patch
from .models import WeightsInfo
from .results import RunStore
from .variants import Variant, parse

log = logging.getLogger(__name__)


def token_stats(model: nn.Module, batch: int) -> tuple[list[int], list[float]]:
    """Patch tokens leaving ToMato's merge, and mean tokens per block, for each image of the
    last forward of ``model`` (an unpatched model keeps every token)."""
    st = patch.state(model, None)
    n = flops.input_patches(model)
    depth = len(model.blocks)
    if st is None or not st.tokens_per_block:
        t = n + model.num_prefix_tokens
        return [n] * batch, [float(t)] * batch
    if st.kind == "tome":
        first = st.tokens_per_block[0] - st.num_prefix_tokens
        mean = sum(st.tokens_per_block) / depth
        return [first] * batch, [mean] * batch
    if st.tokens is None:  # patched with ToMato but merging disabled
        n = st.grid[0] * st.grid[1]
        return [n] * batch, [float(n + st.num_prefix_tokens)] * batch
    kept = st.tokens.tolist()
    if st.settings.block == 0 and not any(st.r):
        return kept, [float(k + st.num_prefix_tokens) for k in kept]
    # A later merge or ToMe after it: each image's schedule, as its FLOPs count it.
    dims = flops.dims_of(model)
    means = [sum(m for _, m in flops.tokens_schedule_tomato(dims, k, st.settings.block, st.r)) / depth
             for k in kept]
    return kept, means


def samples_digest(samples: Sequence[data.Sample]) -> str:
    """Short hash of the image list (paths relative to their common root, and labels)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.path.parent.name}/{s.path.name}:{s.label}\n".encode())
    return h.hexdigest()[:16]


def run_config(model_name: str, weights: WeightsInfo, variant: Variant, samples: Sequence[data.Sample],
               data_label: str) -> dict[str, Any]:
    """The identity of an accuracy run: what must match for a folder to be resumed."""
    return {
        "kind": "eval",
        "model": model_name,
        "weights_source": weights.source,
        "weights_sha256": weights.sha256,
        "pretrained": weights.pretrained,
        "variant": variant.spec,
        "data": data_label,
        "n_images": len(samples),
        "images_sha": samples_digest(samples),
    }


def evaluate(
    model: nn.Module,
    weights: WeightsInfo,
    variant: Variant | str,
    samples: Sequence[data.Sample],
    out: Path | str,
    *,
    data_label: str,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = True,
    photos: Any = None,
    started: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``variant`` of ``model`` on ``samples``; returns the summary dict.

    ``photos``: optional :class:`tomato.harness.decoded.Photos` holding ``samples`` already
    decoded (a recording decodes each photo once for every variant); batches then follow
    its fixed chunks, so an interrupted run resumes into the same batches. ``started``: the
    :func:`tomato.harness.provenance.start` of the process that runs it (default: now).

    Resumes from ``out`` when it holds the same run; ``max_batches`` stops early (a
    later call continues). The folder is locked for the whole call (a concurrent run
    into it gets ``RunFolderBusy``). Unusable images are skipped and listed in
    bad_images.csv with their reason: corrupt ones for good, transient ones (could not
    be read now) until a resume reads them; ``summary["complete"]`` is False while any
    transient one stands.
    """
    variant = parse(variant)
    model = variant.apply(model).to(device).eval()
    config = run_config(weights.model, weights, variant, samples, data_label)
    with RunStore.open(out, config) as store:
        finished = store.finished_summary(len(samples))
        if finished is not None:  # nothing to do: the folder stays as the sessions that ran left it
            return finished
        store.record_provenance(
            provenance.collect(started, **config, batch_size=batch_size, device=str(device), data_path=data_label))
        return _run(model, weights, variant, samples, store, batch_size=batch_size, num_workers=num_workers,
                    device=device, max_batches=max_batches, progress=progress, data_label=data_label,
                    photos=photos)


def _run(model: nn.Module, weights: WeightsInfo, variant: Variant, samples: Sequence[data.Sample],
         store: RunStore, *, batch_size: int, num_workers: int, device: str | torch.device,
         max_batches: int | None, progress: bool, data_label: str, photos: Any = None) -> dict[str, Any]:
    """The batch loop of :func:`evaluate` on an open (locked) store."""
    todo = [i for i in range(len(samples)) if i not in store.done]
    if store.retry:
        log.info("retrying %d image(s) that could not be read last time", len(store.retry & set(todo)))
    if photos is not None:
        loader = photos.batches(batch_size, skip=store.done)
    else:
        dataset = data.ImageNetFolder(list(samples), data.transform_for(model))
        loader = DataLoader(dataset, batch_size=batch_size, sampler=todo, num_workers=num_workers,
                            collate_fn=data.collate_skip_bad)
    model_seconds = 0.0
    images_done = 0
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), disable=not progress,
               desc=f"{variant.label}", unit="img")
    for b, (images, labels, indices, bad) in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        rows: list[dict[str, Any]] = []
        if len(indices):
            t0 = time.perf_counter()
            with torch.inference_mode():
                logits = model(images.to(device))
            model_seconds += time.perf_counter() - t0
            images_done += len(indices)
            top5 = logits.float().topk(min(5, logits.shape[-1]), dim=-1).indices.cpu()
            kept, per_block = token_stats(model, len(indices))
            st = patch.state(model, None)
            has_sim = st is not None and st.log_sim is not None
            sims = st.sim.tolist() if has_sim else [None] * len(indices)
            log10 = (st.log_sim / math.log(10)).tolist() if has_sim else [None] * len(indices)
            for j, idx in enumerate(indices.tolist()):
                label = int(labels[j])
                preds = top5[j].tolist()
                rows.append({
                    "index": idx, "path": str(samples[idx].path), "label": label, "top5": preds,
                    "correct1": preds[0] == label, "correct5": label in preds,
                    "tokens": kept[j], "tokens_per_block": round(per_block[j], 3), "sim": sims[j],
                    "log10_sim": log10[j],
                })
        bad_rows = [{"index": b.index, "path": str(samples[b.index].path), "kind": b.kind, "error": b.error}
                    for b in bad]
        store.append(rows, bad_rows)
        bar.update(len(rows) + len(bad_rows))
    bar.close()
    extra = {"variant": variant.spec, "model": weights.model, "weights_source": weights.source,
             "pretrained": weights.pretrained, "data": data_label}
    if images_done:
        extra["images_per_s_last_session"] = images_done / model_seconds
    summary = store.summary(extra)
    summary["complete"] = store.complete(len(samples))
    if store.retry:
        example = next(b for b in store.bad if b["index"] in store.retry)
        log.warning("%d image(s) could not be read now (e.g. %s: %s); fix access and rerun the same "
                    "command to retry them", len(store.retry), example["path"], example["error"])
    if not weights.pretrained:
        log.warning("%s ran with %s: these numbers are NOT accuracy", variant.spec, weights.source)
    return summary
