"""Measures computed from recorded runs: agreement with the baseline, how diverse the
baseline's predictions are, token cuts, FLOPs, latency changes.

Nothing here runs a model. :func:`prediction_agreement` is the proxy random weights
cannot spoil: how often each variant's top-1 equals the unpatched model's top-1 on the
same image (how much merging perturbs the network). pandas is imported inside functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..harness import flops, variants
from ..harness.fidelity import prediction_diversity
from ..harness.speed import variant_flops
from . import paper
from .runs import RecordedRun, predictions_of, read_predictions

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def prediction_agreement(source: Any, baseline: str = "deit") -> pd.DataFrame:
    """Agreement of each variant's predictions with the baseline's on the same images.

    ``source``: a :class:`RecordedRun`, a run folder, or a mapping of variant spec ->
    predictions DataFrame (as :func:`read_predictions` returns). Images are joined on
    ``index``. Columns: ``variant``, ``n`` (images both have), ``top1_agreement`` (% of
    images whose top-1 equals the baseline's top-1), ``top5_overlap`` (mean % of the
    baseline's top-5 classes found in the variant's top-5). Meaningful with random
    weights too: it measures how much merging changes the network's output. Empty when
    the baseline is missing.
    """
    import pandas as pd

    cols = ["variant", "n", "top1_agreement", "top5_overlap"]
    preds = predictions_of(source)
    base_spec = variants.canonical(baseline)
    if base_spec not in preds:
        return pd.DataFrame(columns=cols)
    base = preds[base_spec][["index", "top1", "top5"]]
    records = []
    for spec in variants.order(list(preds)):
        m = base.merge(preds[spec][["index", "top1", "top5"]], on="index", suffixes=("_b", "_v"))
        n = len(m)
        if n:
            agree = 100.0 * float((m["top1_b"] == m["top1_v"]).mean())
            overlap = 100.0 * float(sum(
                len(set(a.split()) & set(b.split())) / max(1, len(a.split()))
                for a, b in zip(m["top5_b"], m["top5_v"])) / n)
        else:
            agree = overlap = float("nan")
        records.append({"variant": spec, "n": n, "top1_agreement": agree, "top5_overlap": overlap})
    return pd.DataFrame(records, columns=cols)


def baseline_diversity(source: Any, baseline: str = "deit") -> dict[str, Any] | None:
    """How varied the baseline's top-1 predictions are over a run's images
    (:func:`tomato.harness.fidelity.prediction_diversity`: ``n``, ``distinct``,
    ``entropy_bits``, ``max_entropy_bits``, ``top_share``, ``degenerate``, ...).

    ``source`` as for :func:`prediction_agreement`. Agreement with a classifier that
    predicts a handful of classes for everything costs little, so every agreement figure
    is read next to this. True labels (``label`` >= 0 on every image) set how many classes
    the images cover; without them ``labelled`` is False. None when the baseline has no
    predictions.
    """
    preds = predictions_of(source).get(variants.canonical(baseline))
    if preds is None or preds.empty:
        return None
    # True labels only when every image has one (-1: unknown): a partial count of the
    # classes would understate how many the images cover.
    labels = None
    if "label" in preds and (preds["label"] >= 0).all():
        labels = [int(v) for v in preds["label"]]
    return prediction_diversity([int(v) for v in preds["top1"]], labels)


def tokens_cut_range(predictions: Any, num_patches: int = paper.NUM_PATCHES) -> tuple[float, float, float]:
    """(min %, max %, mean %) of patch tokens removed per image: ``100 * (1 - tokens /
    num_patches)`` over the rows of ``predictions`` (a predictions.csv path, a run folder
    or a DataFrame with a ``tokens`` column). The paper's 8.16%–20.92% for sim=1e-7 is
    this (min, max)."""
    import pandas as pd

    df = predictions if isinstance(predictions, pd.DataFrame) else read_predictions(predictions)
    tokens = pd.to_numeric(df["tokens"], errors="coerce").dropna()
    if tokens.empty:
        raise ValueError("no token counts in these predictions")
    cut = 100.0 * (1.0 - tokens / float(num_patches))
    return float(cut.min()), float(cut.max()), float(cut.mean())


def tome_token_cut(r: int, depth: int = 12, num_patches: int = paper.NUM_PATCHES,
                   num_prefix_tokens: int = 1) -> tuple[float, float]:
    """ToMe with ``r``: (% of patch tokens gone after the last block, mean % fewer tokens
    per block than the unmerged model), from :func:`tomato.harness.flops.tokens_schedule_tome`."""
    dims = flops.ViTDims(embed_dim=768, depth=depth, num_heads=12, mlp_ratio=4.0, patch_size=16,
                         num_patches=num_patches, num_prefix_tokens=num_prefix_tokens)
    sched = flops.tokens_schedule_tome(dims, r)
    final = 100.0 * (dims.num_tokens - sched[-1][1]) / num_patches
    mean_tokens = sum(m for _, m in sched) / depth
    mean_cut = 100.0 * (dims.num_tokens - mean_tokens) / dims.num_tokens
    return final, mean_cut


#: Shape of DeiT-B/16 at 224x224 (what the paper runs), for FLOPs without building the model.
DEIT_B_DIMS = flops.ViTDims(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16,
                            num_patches=paper.NUM_PATCHES, num_prefix_tokens=1)


def eval_gflops(run: RecordedRun, dims: Any = None) -> dict[str, float]:
    """Mean GFLOPs per image of every variant of ``run`` over the images it evaluated,
    from each image's kept tokens (``predictions.csv``) via
    :func:`tomato.harness.speed.variant_flops`. ``dims``: a :class:`tomato.harness.flops.ViTDims`
    (default :data:`DEIT_B_DIMS`). ``sweep.csv``'s ``gflops`` is the FLOPs at the mean
    token count; this is the mean of each image's FLOPs, which differs slightly because
    attention is quadratic in the tokens."""
    dims = dims or DEIT_B_DIMS
    out: dict[str, float] = {}
    for spec, vr in run.variants.items():
        try:
            v = variants.parse(spec)
        except ValueError:
            continue
        if v.kind in ("tomato", "hybrid"):
            if not vr.has_predictions:
                continue
            tokens = vr.predictions()["tokens"].dropna()
            if tokens.empty:
                continue
            # Mean over images of each image's FLOPs (attention is quadratic in tokens).
            per = {k: variant_flops(dims, v, float(k)) for k in tokens.unique()}
            f = float(tokens.map(per).mean())
        else:
            f = variant_flops(dims, v, dims.num_patches)
        out[spec] = f / 1e9
    return out


def add_eval_gflops(rows: pd.DataFrame, run: RecordedRun, dims: Any = None) -> pd.DataFrame:
    """``rows`` with a ``gflops_eval`` column from :func:`eval_gflops` and
    ``ideal_speedup_eval`` (baseline's ``gflops_eval`` over the variant's)."""
    g = eval_gflops(run, dims)
    df = rows.copy()
    df["gflops_eval"] = [g.get(variants.canonical(s), float("nan")) for s in df["variant"]]
    base = g.get(variants.canonical(paper.BASELINE))
    df["ideal_speedup_eval"] = [base / v if base and v == v else float("nan") for v in df["gflops_eval"]]
    return df


def latency_changes(rows: pd.DataFrame, column: str = "median_s", baseline: str = paper.BASELINE,
                    tome: str = paper.TOME) -> pd.DataFrame:
    """Per variant: ``column`` and its change in % vs the baseline and vs ToMe r=2 (when
    present), measured in the same run: the ratios to compare with the paper's -22.19% /
    -6.06%."""
    import pandas as pd

    df = rows[["variant", column]].copy()
    df["variant"] = [variants.canonical(s) for s in df["variant"]]
    ref = dict(zip(df["variant"], pd.to_numeric(df[column], errors="coerce")))
    for name, spec in (("vs_baseline_%", variants.canonical(baseline)), ("vs_tome_r2_%", variants.canonical(tome))):
        r = ref.get(spec)
        df[name] = [100.0 * (v / r - 1.0) if r and v == v and r == r else float("nan")
                    for v in pd.to_numeric(df[column], errors="coerce")]
    return df


def tomato_single_merge(run: RecordedRun | None) -> bool | None:
    """True when every ToMato image of ``run`` keeps its block-0 token count in every
    later block (``tokens_per_block == tokens + 1 prefix``); None without ToMato runs."""
    if run is None:
        return None
    import pandas as pd

    vr = run.variants.get(paper.TOMATO)
    if vr is None or not vr.has_predictions:
        return None
    df = vr.predictions()
    if "tokens_per_block" not in df:
        return None
    prefix = 1 if "distilled" not in str(vr.config.get("model", "")) else 2
    tpb = pd.to_numeric(df["tokens_per_block"], errors="coerce")
    return bool(((tpb - (df["tokens"] + prefix)).abs() < 1e-6).all())

