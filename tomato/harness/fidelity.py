"""How much a merge changes the model's output, measured so that it means something with any weights.

Top-1 agreement with the unpatched model says little when the classifier is degenerate
(seeded random-init weights predict a handful of classes for everything). This module
measures, per image,

* **output drift**: cosine similarity of the final class-token features (pre-logits) and
  the KL divergence ``KL(p_base || p_variant)`` of the class distributions, patched vs
  unpatched;
* **null baselines at the same token budget** as a ToMato run (ToMato: Token Merging at
  Once, merging block 0's patch tokens into groups once; the paper's method): random groups
  with ToMato's group sizes (merged by size-weighted mean, sizes kept for proportional
  attention), ``k`` random tokens kept, the first ``k`` tokens kept, and ToMe (Bolya et al.,
  ICLR 2023) with the ``r`` whose mean token count per block matches ToMato's;
* **how degenerate the baseline classifier is**: distinct predictions, their entropy and
  the share of the most frequent class.

Every null baseline runs the same forward as ToMato's merged model (block 0 to its
attention residual, :func:`tomato.core.merge.merge_groups`, proportional attention in the
later blocks); only the group labels differ. Randomness comes from a caller's
``torch.Generator``; no global RNG state is read or changed.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core import attention, merge, patch, probe

if TYPE_CHECKING:
    from .data import Sample

__all__ = [
    "Outputs", "plain_outputs", "grouped_outputs", "patched_outputs", "cosine", "kl_divergence",
    "random_group_labels", "keep_groups", "random_keep", "first_keep", "tome_r_for_tokens",
    "prediction_diversity", "compare_batch", "run", "record", "summarise", "format_summary", "spread", "NULLS",
]

NULLS = ("random_groups", "random_keep", "first_keep")


@dataclass
class Outputs:
    """One forward's outputs. features: (B, C) pre-logits; logits: (B, K);
    tokens: (B,) patch tokens each image kept (None for the unpatched model)."""

    features: torch.Tensor
    logits: torch.Tensor
    tokens: torch.Tensor | None = None


# --------------------------------------------------------------------------- forwards
def _head(model: nn.Module, x: torch.Tensor, size: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (B, T, C) tokens after the last block -> features (B, C), logits (B, K)."""
    x = model.norm(x)
    if size is not None and getattr(model, "global_pool", "token") == "avg":
        # Weigh merged tokens by the patches they stand for; size-0 pads drop out.
        p = 0 if model.pool_include_prefix else model.num_prefix_tokens
        w = size[:, p:]
        pooled = (x[:, p:] * w).sum(dim=1) / w.sum(dim=1)
        feats = model.head_drop(model.fc_norm(pooled))
        return feats, model.head(feats)
    return model.forward_head(x, pre_logits=True), model.forward_head(x)


def _check_plain(model: nn.Module) -> None:
    if patch.state(model, None) is not None:
        raise ValueError("pass the plain timm model: fidelity patches and unpatches it itself "
                         "(call tomato.core.patch.remove(model) first)")


@torch.inference_mode()
def plain_outputs(model: nn.Module, images: torch.Tensor) -> Outputs:
    """The unpatched model. images: (B, 3, H, W) -> features (B, C), logits (B, K)."""
    _check_plain(model)
    x = model.forward_features(images)
    return Outputs(model.forward_head(x, pre_logits=True), model.forward_head(x))


@torch.inference_mode()
def grouped_outputs(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    counts: torch.Tensor,
    size: torch.Tensor | None = None,
) -> Outputs:
    """Run the model with block 0's patch tokens merged into the given groups.

    images: (B, 3, H, W); labels: (B, N) group of each patch token in 0..counts-1;
    counts: (B,) groups per image; size: optional (B, P + N, 1) weight of each incoming
    token (0 drops a token: a group of only size-0 tokens is masked out of attention).
    The merge happens where ToMato's does (after block 0's attention, before its MLP)
    through :func:`tomato.core.merge.merge_groups`; later blocks use proportional
    attention. ``tokens`` counts groups of nonzero size.
    """
    _check_plain(model)
    b0 = probe.block0(model, images)
    p = b0.num_prefix_tokens
    m = merge.merge_groups(b0.x, labels, counts, p, size)
    x, s = m.x, m.size
    blk = model.blocks[0]
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    for blk in model.blocks[1:]:
        a = attention.forward(blk.attn, blk.norm1(x), s)
        x = x + blk.drop_path1(blk.ls1(a.x))
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    feats, logits = _head(model, x, s)
    return Outputs(feats, logits, (s[:, p:, 0] > 0).sum(dim=1))


@torch.inference_mode()
def patched_outputs(model: nn.Module, images: torch.Tensor, kind: str, **settings: Any) -> tuple[Outputs, patch.State]:
    """Run ``model`` patched with ToMato (``kind="tomato"``, settings such as ``sim=1e-7``
    or ``keep_ratio=0.85``) or ToMe (``kind="tome"``, ``r=...``), then unpatch it.

    images: (B, 3, H, W) -> (Outputs, the patched model's State of this forward).
    """
    _check_plain(model)
    if kind not in ("tomato", "tome"):
        raise ValueError(f"kind must be 'tomato' or 'tome', got {kind!r}")
    (patch.timm if kind == "tomato" else patch.tome)(model)
    try:
        for name, value in settings.items():
            setattr(model, name, value)
        x = model.forward_features(images)
        out = Outputs(model.forward_head(x, pre_logits=True), model.forward_head(x))
        st = patch.state(model)
        out.tokens = st.tokens.clone() if st.tokens is not None else None
        return out, st
    finally:
        patch.remove(model)


# --------------------------------------------------------------------------- measures
def cosine(ref: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per-row cosine similarity in float64. ref, other: (B, C) -> (B,), 1 = same direction."""
    return F.cosine_similarity(ref.double(), other.double(), dim=-1)


def kl_divergence(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(ref) || softmax(logits)) in nats, per row, float64. (B, K), (B, K) -> (B,) >= 0."""
    log_p = F.log_softmax(ref_logits.double(), dim=-1)
    log_q = F.log_softmax(logits.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).clamp_min(0.0)


# --------------------------------------------------------------------------- null groupings
def random_group_labels(
    labels: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Random groups with the same sizes: a random partition of the grid whose group sizes
    equal those of ``labels``.

    labels: (B, N) in 0..counts-1; counts: (B,) -> (B, N) random labels, group g keeping
    exactly as many members as in ``labels`` (members drawn uniformly, not neighbours).
    """
    b, n = labels.shape
    out = torch.empty_like(labels)
    for i in range(b):
        # Sorting the labels gives consecutive runs with the right sizes; a random
        # permutation then scatters each run over the grid.
        runs = labels[i].sort().values
        perm = torch.randperm(n, generator=generator).to(labels.device)
        out[i, perm] = runs
    return out


def keep_groups(keep: torch.Tensor, num_prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep some patch tokens unmerged and drop the rest, as a grouping for :func:`grouped_outputs`.

    keep: (B, N) bool -> labels (B, N), counts (B,), size (B, P + N, 1). Kept tokens are
    singleton groups in grid order with size 1; dropped tokens share one last group of
    size 0, which proportional attention masks out (``log 0 = -inf``).
    """
    b, n = keep.shape
    order = keep.long().cumsum(dim=1) - 1
    k = keep.sum(dim=1)
    labels = torch.where(keep, order, k.unsqueeze(1))
    counts = k + (k < n).long()
    size = torch.ones(b, num_prefix_tokens + n, 1, device=keep.device)
    size[:, num_prefix_tokens:, 0] = keep.float()
    return labels, counts, size


def random_keep(n: int, k: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """k: (B,) tokens to keep per image -> (B, n) bool with exactly k[i] random True."""
    rows = [torch.randperm(n, generator=generator) < int(ki) for ki in k.tolist()]
    return torch.stack(rows).to(k.device)


def first_keep(n: int, k: torch.Tensor) -> torch.Tensor:
    """k: (B,) -> (B, n) bool keeping the first k[i] tokens in raster order."""
    return torch.arange(n, device=k.device).unsqueeze(0) < k.unsqueeze(1)


def tome_r_for_tokens(num_patches: int, depth: int, tokens: float, num_prefix_tokens: int = 1) -> int:
    """ToMe's ``r`` whose mean token count over the blocks (after each block's merge) is
    closest to ``tokens`` + prefix, ToMato's count after its one merge in block 0.

    ToMe caps ``r`` at half the mergeable tokens in each block, as in
    :func:`tomato.core.tome.match`.
    """
    target = tokens + num_prefix_tokens
    best, best_gap = 0, math.inf
    for r in range(0, num_patches // 2 + 1):
        t, seen = num_patches + num_prefix_tokens, []
        for _ in range(depth):
            t -= min(r, (t - num_prefix_tokens) // 2)
            seen.append(t)
        gap = abs(sum(seen) / depth - target)
        if gap < best_gap:
            best, best_gap = r, gap
    return best


# --------------------------------------------------------------------------- diversity
def prediction_diversity(
    predictions: Sequence[int],
    true_labels: Sequence[int] | None = None,
    max_share: float = 0.10,
    min_distinct: float = 0.10,
) -> dict[str, Any]:
    """How varied a classifier's predictions are.

    predictions: class index per image. Returns ``n``, ``distinct``, ``entropy_bits``,
    ``max_entropy_bits`` (log2 of min(n, classes seen)), ``top_class``, ``top_share``,
    ``classes_seen`` (distinct true labels, or n without labels), ``labelled`` (whether
    true labels were given), ``degenerate``: True when the top class takes more than
    ``max(max_share, 2 / classes seen)`` of the predictions, at most half (twice its share
    were the classes even: a ten-class head's top class may take 12%, a 1000-class head's not 30%)
    or the distinct predictions are fewer than ``min_distinct`` x classes seen, and
    ``reasons`` (which of the two tripped, in words).
    Agreement with such a classifier costs little, so every agreement figure should carry
    this flag.
    """
    n = len(predictions)
    if n == 0:
        raise ValueError("prediction_diversity needs at least one prediction")
    counts = Counter(int(p) for p in predictions)
    top_class, top = counts.most_common(1)[0]
    shares = [c / n for c in counts.values()]
    entropy = -sum(s * math.log2(s) for s in shares)
    seen = len(set(int(t) for t in true_labels)) if true_labels is not None else n
    out = {
        "n": n, "distinct": len(counts), "entropy_bits": entropy,
        "max_entropy_bits": math.log2(max(1, min(n, seen))),
        "top_class": top_class, "top_share": top / n, "classes_seen": seen,
        "labelled": true_labels is not None,
    }
    reasons = degenerate_reasons(out, max_share, min_distinct)
    return {**out, "degenerate": bool(reasons), "reasons": reasons}


def degenerate_reasons(diversity: Mapping[str, Any], max_share: float = 0.10,
                       min_distinct: float = 0.10) -> list[str]:
    """Why the predictions described by ``diversity`` (the keys of
    :func:`prediction_diversity`) are degenerate, in words; empty when they are not. The one
    statement of the rule, so a record written under an older rule is read by today's."""
    seen = diversity.get("classes_seen", diversity.get("n"))
    if seen is None or "top_share" not in diversity or "distinct" not in diversity:
        # Too little recorded to apply the rule: keep the record's own verdict.
        return list(diversity.get("reasons") or (["recorded as degenerate"] if diversity.get("degenerate") else []))
    share, distinct = diversity["top_share"], diversity["distinct"]
    reasons = []
    # Twice the even share, but never more than half: two classes seen must not excuse one.
    limit = min(0.5, max(max_share, 2.0 / max(1, seen)))
    if share > limit:
        reasons.append(f"one class takes {share:.1%} of the predictions (more than {limit:.0%})")
    if distinct < min_distinct * seen:
        reasons.append(f"{distinct} distinct predictions for {seen} "
                       + ("classes" if diversity.get("labelled", True) else "images")
                       + f" (fewer than {min_distinct:.0%} of them)")
    return reasons


def _rows(name: str, setting: str, base: Outputs, out: Outputs, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    cos, kl = cosine(base.features, out.features), kl_divergence(base.logits, out.logits)
    agree = base.logits.argmax(-1) == out.logits.argmax(-1)
    rows = []
    for j in range(base.logits.shape[0]):
        row = {"setting": setting, "variant": name,
               "tokens": None if out.tokens is None else int(out.tokens[j]),
               # Rounded so a full-val record stays small: 1e-7 of cosine, 5 digits of KL.
               "cosine": round(float(cos[j]), 7), "kl": float(f"{float(kl[j]):.5g}"), "agree": bool(agree[j]),
               "top1": int(out.logits[j].argmax())}
        rows.append({**row, **(extra or {})})
    return rows


def compare_batch(
    model: nn.Module,
    images: torch.Tensor,
    settings: Sequence[tuple[str, float]],
    generator: torch.Generator,
    tome: bool = True,
) -> tuple[Outputs, list[dict[str, Any]]]:
    """Every variant of one batch against the unpatched model.

    images: (B, 3, H, W); settings: ToMato settings such as ``("sim", 1e-7)`` or
    ``("keep_ratio", 0.85)``. For each setting: ToMato itself, the three null baselines
    at ToMato's per-image budget (:data:`NULLS`) and, with ``tome``, ToMe at the ``r``
    matching ToMato's mean token count over the batch (its ``tokens`` is then the mean
    over the blocks, rounded, and ``tome_final_tokens`` the count after the last block). Returns the unpatched outputs and
    one row per image and variant (``setting``, ``variant``, ``tokens``, ``cosine``,
    ``kl``, ``agree``, ``top1``, ``batch_row``).
    """
    base = plain_outputs(model, images)
    rows: list[dict[str, Any]] = []
    p, depth = model.num_prefix_tokens, len(model.blocks)
    for kind, value in settings:
        label = f"{kind}={value}"
        tom, st = patched_outputs(model, images, "tomato", **{kind: value})
        labels, counts = st.labels, st.tokens
        n = labels.shape[1]
        rows += _rows("tomato", label, base, tom)
        rg = random_group_labels(labels, counts, generator)
        rows += _rows("random_groups", label, base, grouped_outputs(model, images, rg, counts))
        for name, keep in (("random_keep", random_keep(n, counts, generator)), ("first_keep", first_keep(n, counts))):
            lab, cnt, size = keep_groups(keep, p)
            rows += _rows(name, label, base, grouped_outputs(model, images, lab, cnt, size))
        if tome:
            r = tome_r_for_tokens(n, depth, float(counts.double().mean()), p)
            out, st_tome = patched_outputs(model, images, "tome", r=r)
            # ToMe's count falls block by block: report its mean over the blocks (what
            # was matched to ToMato's count) and keep the final count beside it.
            final = out.tokens
            out.tokens = torch.full_like(final, round(sum(st_tome.tokens_per_block) / depth) - p)
            rows += _rows("tome", label, base, out, {"tome_r": r})
            for row, f in zip(rows[-len(final):], final.tolist()):
                row["tome_final_tokens"] = int(f)
    for j, row in enumerate(rows):
        row["batch_row"] = j % images.shape[0]
    return base, rows


def summarise(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and median cosine) per (setting, variant): tokens, cosine, KL, agreement, n."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["variant"]), []).append(r)
    out = []
    for (setting, variant), rs in groups.items():
        n = len(rs)
        cos = sorted(r["cosine"] for r in rs)
        out.append({
            "setting": setting, "variant": variant, "n": n,
            "tokens_mean": sum(r["tokens"] for r in rs) / n,
            "cosine_mean": sum(cos) / n, "cosine_median": cos[n // 2] if n % 2 else (cos[n // 2 - 1] + cos[n // 2]) / 2,
            "kl_mean": sum(r["kl"] for r in rs) / n,
            "agreement": sum(r["agree"] for r in rs) / n,
            **({"tome_r": rs[0]["tome_r"]} if "tome_r" in rs[0] else {}),
        })
    return out


def run(
    model: nn.Module,
    samples: Sequence[Sample],
    sims: Sequence[float] = (1e-7,),
    keep_ratios: Sequence[float] = (0.85, 0.7),
    seed: int = 0,
    batch_size: int = 10,
    tome: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """The fidelity study over ``samples`` with the plain timm ``model``.

    Returns ``{"rows": per-image rows (with ``index`` and ``label``), "summary":
    :func:`summarise`, "baseline": :func:`prediction_diversity` of the unpatched model}``.
    Null baselines draw from ``torch.Generator().manual_seed(seed)``.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from . import data

    _check_plain(model)
    gen = torch.Generator().manual_seed(seed)
    settings = settings_of(sims, keep_ratios)
    loader = DataLoader(data.ImageNetFolder(list(samples), data.transform_for(model)),
                        batch_size=batch_size, collate_fn=data.collate_skip_bad)
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    for images, labels, indices, _ in tqdm(loader, disable=not progress, desc="fidelity"):
        if not len(indices):
            continue
        rows += batch_rows(model, images.to(device), labels, indices, settings, gen, tome)
    return assemble(rows)


def settings_of(sims: Sequence[float], keep_ratios: Sequence[float]) -> list[tuple[str, float]]:
    """The ToMato settings of a study, thresholds first: ``[("sim", 1e-7), ("keep_ratio", 0.5)]``."""
    return [("sim", float(s)) for s in sims] + [("keep_ratio", float(k)) for k in keep_ratios]


def batch_rows(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
               settings: Sequence[tuple[str, float]], generator: torch.Generator,
               tome: bool = True) -> list[dict[str, Any]]:
    """The study's rows of one batch: :func:`compare_batch` with each row's photo ``index``,
    true ``label`` and the unpatched model's ``top1_base``. images: (B, 3, H, W); labels,
    indices: (B,)."""
    base, rows = compare_batch(model, images, settings, generator, tome)
    top1 = base.logits.argmax(-1)
    for r in rows:
        j = r.pop("batch_row")
        r["index"], r["label"], r["top1_base"] = int(indices[j]), int(labels[j]), int(top1[j])
    return rows


def assemble(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The study from its per-photo rows: rows, :func:`summarise` and the unpatched model's
    :func:`prediction_diversity` (one prediction a photo)."""
    base = {r["index"]: (r["top1_base"], r["label"]) for r in rows}
    preds = [base[i][0] for i in sorted(base)]
    truth = [base[i][1] for i in sorted(base)]
    return {"rows": rows, "summary": summarise(rows), "baseline": prediction_diversity(preds, truth)}


def record(
    model_name: str,
    model: nn.Module,
    weights_source: str,
    weights_sha256: str,
    samples: Sequence[Sample],
    data_label: str,
    sims: Sequence[float] = (1e-7,),
    keep_ratios: Sequence[float] = (0.85, 0.7),
    seed: int = 0,
    batch_size: int = 10,
    tome: bool = True,
    progress: bool = True,
    result: dict[str, Any] | None = None,
    started: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`run` plus its provenance (model, weights, data, settings, machine, commit,
    date): the JSON record ``python -m tomato fidelity`` writes under ``data/results/``.
    A ``result`` computed elsewhere (:func:`assemble`, by a recording) is described instead
    of running the study, with ``started`` (:func:`tomato.harness.provenance.start`)."""
    from . import provenance

    if result is None:
        started = provenance.start()  # the code that ran, not what the checkout holds at the end
        result = run(model, samples, sims, keep_ratios, seed, batch_size, tome, progress)
    result["provenance"] = provenance.collect(
        started,
        model=model_name, weights_source=weights_source, weights_sha256=weights_sha256,
        data=data_label, n_images=len(samples), sims=list(sims), keep_ratios=list(keep_ratios),
        seed=seed, batch_size=batch_size, tome_at_equal_tokens=tome,
        kl="KL(p_unpatched || p_variant), nats", cosine="final class-token features (pre-logits)",
    )
    return provenance.jsonable(result)


def format_summary(result: dict[str, Any]) -> str:
    """Plain-text table of a :func:`run` / :func:`record` result, baseline diversity first
    (what ``python -m tomato fidelity`` prints)."""
    b = result["baseline"]
    lines = [
        f"unpatched model: {b['distinct']} distinct predictions over {b['n']} images "
        f"({b['classes_seen']} classes seen), entropy {b['entropy_bits']:.2f} of {b['max_entropy_bits']:.2f} bits, "
        f"top class {b['top_share']:.1%}" + ("  -- DEGENERATE: agreement with it costs little" if b["degenerate"] else ""),
        f"{'setting':17s} {'variant':14s} {'n':>4s} {'tokens':>7s} {'cosine':>8s} {'cos med':>8s} {'KL nats':>9s} {'agree':>6s}",
    ]
    for s in result["summary"]:
        lines.append(
            f"{s['setting']:17s} {s['variant']:14s} {s['n']:4d} {s['tokens_mean']:7.1f} {s['cosine_mean']:8.4f} "
            f"{s['cosine_median']:8.4f} {s['kl_mean']:9.5f} {s['agreement']:6.1%}"
            + (f"  r={s['tome_r']}" if "tome_r" in s else ""))
    return "\n".join(lines)


def spread(samples: Sequence[Sample], limit: int | None) -> list[Sample]:
    """At most ``limit`` samples spread evenly over ``samples`` (every k-th in order), so
    a small study still covers many classes of a folder sorted by class."""
    samples = list(samples)
    if not limit or limit >= len(samples):
        return samples
    return samples[:: len(samples) // limit][:limit]
