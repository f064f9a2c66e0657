"""How alike two groupings of the same tokens are (faithful vs parallel, metric vs metric).

Both measures compare label vectors of equal length; label values themselves do not
matter, only which tokens share a group.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import torch

if TYPE_CHECKING:
    from .data import Sample


def _pairs(counts: torch.Tensor) -> torch.Tensor:
    return (counts * (counts - 1) / 2).sum()


def adjusted_rand_index(a: torch.Tensor, b: torch.Tensor) -> float:
    """Adjusted Rand index of two partitions a, b: (N,) labels. 1 = identical; ~0 = chance.

    Two all-singleton (or two all-one-group) partitions are identical and score 1.
    """
    a, b = a.flatten().long(), b.flatten().long()
    n = a.numel()
    _, a_idx = torch.unique(a, return_inverse=True)
    _, b_idx = torch.unique(b, return_inverse=True)
    table = torch.zeros(int(a_idx.max()) + 1, int(b_idx.max()) + 1, dtype=torch.float64)
    table.index_put_((a_idx, b_idx), torch.ones(n, dtype=torch.float64), accumulate=True)
    index = _pairs(table)
    sum_a, sum_b = _pairs(table.sum(1)), _pairs(table.sum(0))
    total = torch.tensor(n * (n - 1) / 2, dtype=torch.float64)
    expected = sum_a * sum_b / total if total > 0 else torch.tensor(0.0, dtype=torch.float64)
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:
        # Only when both are all-singletons or both one group (AM-GM): identical.
        return 1.0
    return float((index - expected) / (maximum - expected))


def identical_groups(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of a's groups that appear in b with exactly the same members (0..1)."""
    a, b = a.flatten().tolist(), b.flatten().tolist()
    groups_a: dict[int, set[int]] = {}
    groups_b: dict[int, set[int]] = {}
    for i, (x, y) in enumerate(zip(a, b)):
        groups_a.setdefault(x, set()).add(i)
        groups_b.setdefault(y, set()).add(i)
    same = sum(1 for members in groups_a.values()
               if groups_b[b[next(iter(members))]] == members)
    return same / len(groups_a)


def method_agreement(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    sims: Sequence[float] = (1e-7,),
    keep_ratios: Sequence[float] = (0.85,),
    metric: str = "features",
    batch_size: int = 16,
    progress: bool = True,
    photos: Any = None,
) -> list[dict[str, Any]]:
    """Faithful vs parallel partitions of real images, one row per image and setting.

    For a fixed ``sim`` all three groupings use that threshold; for a ``keep_ratio`` the
    threshold is the one the faithful visit's budget search picks, then applied to all.
    Row keys: index, setting, sim, tokens_faithful/either/both, same_directed (the
    parallel "directed" rule reproduced the faithful labels exactly), ari_either/both,
    identical_either/both (share of faithful groups found unchanged).
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from ..core import pipeline, probe
    from . import data

    if photos is not None:  # a :class:`tomato.harness.decoded.Photos` of ``samples``, decoded once
        loader = photos.batches(batch_size)
    else:
        ds = data.ImageNetFolder(list(samples), data.transform_for(model))
        loader = DataLoader(ds, batch_size=batch_size, collate_fn=data.collate_skip_bad)
    settings = [("sim", s) for s in sims] + [("keep_ratio", k) for k in keep_ratios]
    rows: list[dict[str, Any]] = []
    for images, _, indices, _ in tqdm(loader, disable=not progress, desc="partitions"):
        if not len(indices):
            continue
        device = next(model.parameters()).device
        b0 = probe.block0(model, images.to(device))
        grid = b0.grid
        scores = pipeline.neighbour_log_scores(b0.x, grid, b0.num_prefix_tokens, metric, b0.attn)
        for kind, value in settings:
            chosen = pipeline.Settings(**{kind: value}, method="faithful", metric=metric)
            log_sim = pipeline.choose_log_sim(scores, grid, chosen)
            sim = log_sim.exp()
            f, fc = pipeline.labels_at(scores, grid, log_sim, "faithful")
            d, dc = pipeline.labels_at(scores, grid, log_sim, "parallel", "directed")
            e, ec = pipeline.labels_at(scores, grid, log_sim, "parallel", "either")
            o, oc = pipeline.labels_at(scores, grid, log_sim, "parallel", "both")
            for j, idx in enumerate(indices.tolist()):
                rows.append({
                    "index": idx, "setting": f"{kind}={value}", "sim": float(sim[j]),
                    "log10_sim": float(log_sim[j]) / math.log(10),
                    "tokens_faithful": int(fc[j]), "tokens_either": int(ec[j]), "tokens_both": int(oc[j]),
                    "same_directed": bool(torch.equal(f[j], d[j])),
                    "ari_either": adjusted_rand_index(f[j], e[j]), "ari_both": adjusted_rand_index(f[j], o[j]),
                    "identical_either": identical_groups(f[j], e[j]),
                    "identical_both": identical_groups(f[j], o[j]),
                })
    return rows


def record(rows: list[dict[str, Any]], started: Any, weights: Any, data_label: str, n_images: int,
           sims: Sequence[float], keep_ratios: Sequence[float], metric: str) -> dict[str, Any]:
    """The agreement record of :func:`method_agreement`'s ``rows``: rows and provenance
    (``started``: :func:`tomato.harness.provenance.start`; ``weights``: a WeightsInfo)."""
    from . import provenance

    return {"rows": rows, "provenance": provenance.collect(
        started, model=weights.model, weights_source=weights.source, weights_sha256=weights.sha256,
        data=data_label, n_images=n_images, sims=list(sims), keep_ratios=list(keep_ratios), metric=metric)}
