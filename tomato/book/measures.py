"""Measures computed from recorded runs: agreement with the baseline, how diverse the
baseline's predictions are, token cuts, FLOPs, latency changes, and Figure 3's points
relative to DeiT-B with the sentence that reads them (:func:`conclusion`).

Nothing here runs a model. :func:`prediction_agreement` is the proxy random weights
cannot spoil: how often each variant's top-1 equals the unpatched model's top-1 on the
same image (how much merging perturbs the network). pandas is imported inside functions.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..harness import flops, variants
from . import paper
from .runs import RecordedRun, predictions_of, read_predictions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
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


def sim_for_cut(runs: Sequence[RecordedRun], target: float = paper.TOKEN_CUT_MIDDLE, weights_sha256: str | None = None
                ) -> tuple[float, float, int] | None:
    """The recorded ToMato sim whose mean token cut over its photos comes nearest
    ``target`` % (default: the paper's), among the fixed-sim variants of ``runs`` (of the
    weights ``weights_sha256`` when given): (sim, mean cut %, photos); None when none is."""
    best: tuple[float, float, float, int] | None = None
    for run in runs:
        if weights_sha256 and run.provenance.get("weights_sha256") != weights_sha256:
            continue
        for spec, vr in run.variants.items():
            try:
                v = variants.parse(spec)
            except ValueError:
                continue
            if v.kind != "tomato" or [k for k, _ in v.params] != ["sim"] or not vr.has_predictions:
                continue
            preds = vr.predictions()
            mean = tokens_cut_range(preds)[2]
            if best is None or abs(mean - target) < best[0]:
                best = (abs(mean - target), float(v.get("sim")), mean, len(preds))
    return None if best is None else best[1:]


def within_paper_range(cuts: np.ndarray) -> float:
    """% of ``cuts`` (% of patch tokens removed, per image) inside the paper's range at sim=1e-7."""
    import numpy as np

    lo, hi = paper.TOKEN_CUT_SIM_1E7
    return float(100 * np.mean((cuts >= lo) & (cuts <= hi)))


def cut_summary(cuts: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per set of images (name -> % of patch tokens removed, per image): images, min %,
    median %, max % and the share of images within the paper's range at sim=1e-7 (%)."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame({k: {"images": len(v), "min %": v.min(), "median %": np.median(v), "max %": v.max(),
                             "within paper range (%)": within_paper_range(v)}
                         for k, v in cuts.items()}).T


def cut_lines(sims: Sequence[float], cuts: Any, near: tuple[float, float, int] | None) -> str:
    """Markdown under Figure 2 on val photos: the token cut at each of ``sims`` on these
    photos (``cuts``: (len(sims), B) % removed), and ``near`` (:func:`sim_for_cut`) as the
    sim that gives the paper's cut on this model."""
    lo, hi = paper.TOKEN_CUT_SIM_1E7
    lines = [f"- ToMato sim={s:g}: {float(c.min()):.1f}–{float(c.max()):.1f}% of the patch tokens removed "
             f"on these photos (mean {float(c.mean()):.1f}%)." for s, c in zip(sims, cuts)]
    if near is not None:
        lines.append(f"- Over {near[2]:,} recorded photos, sim={near[0]:g} removes {near[1]:.1f}% on "
                     f"average: of the recorded sims, the nearest the paper's cut ({lo}–{hi}% per image) on "
                     "this model.")
    else:
        lines.append("- No recorded run of these weights says which sim gives the paper's cut.")
    return "\n".join(lines)


def tome_token_cut(r: int, depth: int = 12, num_patches: int = paper.NUM_PATCHES,
                   num_prefix_tokens: int = 1) -> tuple[float, float]:
    """ToMe with ``r``: (% of patch tokens gone after the last block, mean % fewer tokens
    per block than the unmerged model), from :func:`tomato.harness.flops.tokens_schedule_tome`."""
    dims = dataclasses.replace(flops.DEIT_B, depth=depth, num_patches=num_patches,
                               num_prefix_tokens=num_prefix_tokens)
    sched = flops.tokens_schedule_tome(dims, r)
    final = 100.0 * (dims.num_tokens - sched[-1][1]) / num_patches
    mean_tokens = sum(m for _, m in sched) / depth
    mean_cut = 100.0 * (dims.num_tokens - mean_tokens) / dims.num_tokens
    return final, mean_cut


def eval_gflops(run: RecordedRun, dims: Any = None) -> dict[str, float]:
    """Mean GFLOPs per image of every variant of ``run`` over the images it evaluated,
    from each image's kept tokens (``predictions.csv``) via
    :func:`tomato.harness.flops.variant_flops`. ``dims``: a :class:`tomato.harness.flops.ViTDims`
    (default :data:`tomato.harness.flops.DEIT_B`). ``sweep.csv``'s ``gflops`` is the FLOPs at the mean
    token count; this is the mean of each image's FLOPs, which differs slightly because
    attention is quadratic in the tokens."""
    dims = dims or flops.DEIT_B
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
            per = {k: flops.variant_flops(dims, v, float(k)) for k in tokens.unique()}
            f = float(tokens.map(per).mean())
        else:
            f = flops.variant_flops(dims, v, dims.num_patches)
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


def sweep_rows(run: RecordedRun, dims: Any = None, model: str | None = None) -> pd.DataFrame:
    """``run``'s rows with its agreement with the baseline, and with FLOPs over all its
    images (:func:`add_eval_gflops`) when ``dims`` is given and the run's model is ``model``
    (FLOPs need the run's own shape; ``model`` None: any)."""
    rows = run.rows().merge(prediction_agreement(run), on="variant", how="left")
    if dims is not None and (model is None or run.provenance.get("model") == model):
        rows = add_eval_gflops(rows, run, dims)
    return rows


def same_tokens(run: RecordedRun, a: str = paper.TOMATO,
                b: str = "tomato:sim=1e-7,method=parallel") -> dict[str, Any] | None:
    """Photo by photo, whether variants ``a`` and ``b`` of ``run`` (the faithful and the
    parallel visit) kept the same number of tokens and gave the same top-1: run, images,
    same token count, same top-1. None when ``run`` lacks either."""
    a, b = variants.canonical(a), variants.canonical(b)
    if a not in run.variants or b not in run.variants:
        return None
    m = run.predictions(a).merge(run.predictions(b), on="index", suffixes=("_f", "_p"))
    return {"run": run.name, "images": len(m),
            "same token count": int((m["tokens_f"] == m["tokens_p"]).sum()),
            "same top-1": int((m["top1_f"] == m["top1_p"]).sum())}


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


def repeat_timings(runs: Sequence[RecordedRun], spec: str = paper.TOMATO) -> str:
    """One sentence per set of runs that timed ``spec`` with the same weights on the same
    device: each run's batch-1 speed-up with its interval, and whether the intervals
    overlap (two timings of one model that do not overlap measured the machine's state as
    much as the model). "" when no weights were timed twice."""
    groups: dict[tuple[str, str], list[tuple[str, Mapping[str, Any]]]] = {}
    want = variants.canonical(spec)
    for run in runs:
        rows = run.rows()
        if "speedup_low" not in rows:
            continue
        for row in rows.to_dict("records"):
            if variants.canonical(str(row["variant"])) == want and row.get("speedup_low") == row.get("speedup_low"):
                key = (str(run.provenance.get("weights_sha256")), str((run.timing_config or {}).get("device", "cpu")))
                groups.setdefault(key, []).append((run.name, row))
    out = []
    for (sha, device), timed in groups.items():
        if len(timed) < 2:
            continue
        overlap = max(float(r["speedup_low"]) for _, r in timed) <= min(float(r["speedup_high"]) for _, r in timed)
        each = "; ".join(f"×{float(r['speedup']):.2f} ({float(r['speedup_low']):.2f}–{float(r['speedup_high']):.2f}, "
                         f"`{name}`)" for name, r in timed)
        out.append(f"{variants.label(want)} was timed {len(timed)} times with the same weights (sha256 `{sha[:8]}…`) "
                   f"on {device}: {each}. "
                   + ("The intervals overlap: the runs agree within their noise." if overlap else
                      "The intervals do not all overlap: the machine's state between runs moved the timing more "
                      "than the rounds of one run show, so read each speed-up with its own run."))
    return "\n\n".join(out)


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


# Figure 3 in the paper's setting ------------------------------------------------------------------
# Figure 3 of the paper, in its own setting: accuracy against latency *relative to DeiT-B*.
#
# The paper plots top-1 against latency on a Jetson Nano for ToMe sweeping ``r`` and ToMato
# sweeping ``sim``. Absolute seconds do not transfer between machines, ratios to the
# unpatched model timed in the same run do, so every latency here is divided by the
# baseline's: the paper's Table 1 points from its printed seconds, ours from one interleaved
# timing run (with the paired bootstrap interval of the speed-up when it was recorded).
#
# :func:`conclusion` writes the page's reading of the figure from those rows: nothing in it
# is typed. pandas is imported inside functions.

#: Families whose points are ToMato (fixed sim, parallel visit, or sim chosen per image).
TOMATO_FAMILIES = ("tomato", "parallel", "keep", "tokens")
#: Two variants are "at equal FLOPs" when their GFLOPs differ by at most this fraction
#: (Figure 3's pairs on page 06 and Table 1 in miniature's on page 10 alike).
EQUAL_FLOPS = 0.05


def paper_points() -> pd.DataFrame:
    """The paper's Table 1 as Figure 3 points: ``variant``, ``label``, ``top1``, ``top5``,
    ``latency_s`` and ``rel_latency`` (latency / DeiT-B's latency, both on the Nano)."""
    import pandas as pd

    base = paper.TABLE1_BY_VARIANT[paper.BASELINE]["latency_s"]
    return pd.DataFrame([{"variant": r["variant"], "label": r["model"], "top1": r["top1"], "top5": r["top5"],
                          "latency_s": r["latency_s"], "rel_latency": r["latency_s"] / base}
                         for r in paper.TABLE1])


def relative_latency(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` plus ``rel_latency`` (variant median / baseline median = 1 / speed-up) and,
    when the speed-up's bootstrap interval was recorded, ``rel_low`` / ``rel_high``
    (its reciprocal bounds; NaN otherwise)."""
    import pandas as pd

    df = rows.copy()
    nan = float("nan")
    speed = pd.to_numeric(df.get("speedup", pd.Series(nan, index=df.index)), errors="coerce")
    df["rel_latency"] = 1.0 / speed
    for out, col in (("rel_low", "speedup_high"), ("rel_high", "speedup_low")):
        df[out] = 1.0 / pd.to_numeric(df[col], errors="coerce") if col in df else nan
    return df


def equal_flops_pairs(rows: pd.DataFrame, column: str = "top1_agreement",
                      tolerance: float = EQUAL_FLOPS) -> list[dict[str, Any]]:
    """Each ToMe variant with the ToMato variant nearest in GFLOPs, when within ``tolerance``
    of each other: one pair per ToMe point, so no point is counted twice. ToMato variants
    that land on the same point (the faithful and parallel visits of one ``sim``) count
    once, the first in variant order. Keys: ``tome``, ``tomato`` (specs), their GFLOPs,
    ``column`` values and image counts ``n`` (None when not given). Uses ``gflops_eval``
    (mean over evaluated images) when present."""
    import pandas as pd

    g = "gflops_eval" if "gflops_eval" in rows else "gflops"
    if g not in rows or column not in rows:
        return []
    df = rows.dropna(subset=[g, column]).copy()
    df = df.set_index("variant", drop=False).loc[variants.order(list(df["variant"]))]
    fam = df["variant"].map(lambda s: variants.parse(s).family)
    tome = df[fam == "tome"]
    tomato = df[fam.isin(TOMATO_FAMILIES)].drop_duplicates(subset=[g, column])
    pairs = []
    for _, b in tome.iterrows():
        if tomato.empty:
            break
        a = tomato.loc[(pd.to_numeric(tomato[g]) - float(b[g])).abs().idxmin()]
        if abs(float(b[g]) - float(a[g])) <= tolerance * max(float(a[g]), float(b[g])):
            pairs.append({"tome": b["variant"], "tomato": a["variant"],
                          "tome_gflops": float(b[g]), "tomato_gflops": float(a[g]),
                          "tome_value": float(b[column]), "tomato_value": float(a[column]),
                          "tome_n": int(b["n"]) if "n" in b and b["n"] == b["n"] else None,
                          "tomato_n": int(a["n"]) if "n" in a and a["n"] == a["n"] else None})
    return pairs


def _changed(value: float, n: int | None) -> str:
    """``99.3%`` or ``99.3% (7 of 1,000 images changed)`` for an agreement value."""
    if not n:
        return f"{value:.1f}%"
    return f"{value:.1f}% ({round((100.0 - value) / 100.0 * n):,} of {n:,} images changed)"


def _ratio(row: Mapping[str, Any]) -> str:
    """``0.944`` or ``0.944 (95% interval 0.812-1.080)``: three decimals, so that a bound
    near 1 does not round onto it and contradict :func:`_resolved`."""
    text = f"{row['rel_latency']:.3f}"
    lo, hi = row.get("rel_low"), row.get("rel_high")
    if lo == lo and hi == hi and lo is not None and hi is not None:  # not NaN
        text += f" (95% interval {lo:.3f}–{hi:.3f})"
    return text


def _timed_on(row: Mapping[str, Any], tolerance: float = 0.05) -> str:
    """A note when the timed images kept another token count than the evaluated ones
    (latency comes from a few timed images, agreement and FLOPs from every image)."""
    timed, mean = row.get("tokens_timed"), row.get("tokens_mean")
    if timed is None or mean is None or timed != timed or mean != mean or not mean:
        return ""
    if abs(float(timed) - float(mean)) <= tolerance * float(mean):
        return ""
    return (f" (timed on images that kept {float(timed):.1f} tokens after block 0 on average, against "
            f"{float(mean):.1f} over every evaluated image)")


def _resolved(row: Mapping[str, Any]) -> str:
    """Whether the interval of a relative latency excludes 1."""
    lo, hi = row.get("rel_low"), row.get("rel_high")
    if lo is None or hi is None or lo != lo or hi != hi:
        return "no interval recorded"
    if hi < 1.0:
        return "faster than the baseline"
    if lo > 1.0:
        return "slower than the baseline"
    return "not resolved from the baseline"


def conclusion(rows: pd.DataFrame, *, pretrained: bool | None, where: str = "this run",
               said: set[str] | None = None) -> str:
    """Markdown bullets reading Figure 3 from ``rows`` (a sweep's rows merged with
    :func:`tomato.book.measures.prediction_agreement`, optionally with ``gflops_eval``)
    beside the paper's Table 1. Every number comes from ``rows`` or from the paper.
    ``pretrained``: True (trained weights), False (random-init) or None (not recorded).
    ``said``: what the page has said already (:func:`tomato.book.notes.first`): the paper's
    reading and the caveats appear once a page."""
    from .notes import first

    pp = paper_points().set_index("variant")
    base_top1 = pp.loc[paper.BASELINE, "top1"]
    tomato_p, tome_p = pp.loc[paper.TOMATO], pp.loc[paper.TOME]
    lines = []
    if first(said, "paper latency"):
        lines.append(f"- **The paper** (Jetson Nano, trained DeiT-B, Table 1): ToMato-B runs at "
                     f"{tomato_p['rel_latency']:.3f} of DeiT-B's latency and ToMe-B at {tome_p['rel_latency']:.3f}, "
                     f"for {tomato_p['top1'] - base_top1:+.2f} and {tome_p['top1'] - base_top1:+.2f} top-1 points.")
    if rows.empty:
        return "\n".join(lines + [f"- **{where}** holds no rows."])
    df = relative_latency(rows)
    df["variant"] = [variants.canonical(s) for s in df["variant"]]
    is_tomato = df["variant"].map(lambda s: variants.parse(s).family in TOMATO_FAMILIES).astype(bool)
    timed = df.dropna(subset=["rel_latency"]).set_index("variant")
    shown = [s for s in (paper.TOMATO, paper.TOME) if s in timed.index]
    if shown:
        parts = [f"{variants.label(s)} at {_ratio(timed.loc[s])}, {_resolved(timed.loc[s])}{_timed_on(timed.loc[s])}"
                 for s in shown]
        lines.append(f"- **{where}**, latency relative to its baseline: " + "; ".join(parts) + ".")
        fastest = df[is_tomato].dropna(subset=["rel_latency"]).set_index("variant")
        if not fastest.empty:
            best = fastest["rel_latency"].idxmin()
            lines.append(f"- The lowest ToMato latency here is {variants.label(best)}'s, "
                         f"{_ratio(fastest.loc[best])}, {_resolved(fastest.loc[best])}{_timed_on(fastest.loc[best])}."
                         + (" (The smallest of several noisy ratios flatters its winner.)"
                            if first(said, "winner") else ""))
    else:
        lines.append(f"- **{where}** has no timing of the paper's variants.")
    y = "top1" if pretrained else "top1_agreement"
    what = "top-1" if pretrained else "top-1 agreement with the baseline"
    if y in df:
        tom = df[is_tomato].dropna(subset=[y])
        if len(tom) > 1:
            lo, hi = tom.loc[tom[y].idxmin()], tom.loc[tom[y].idxmax()]
            lines.append(f"- Across its {len(tom)} ToMato points, {what} runs from {lo[y]:.1f}% "
                         f"({variants.label(lo['variant'])}) to {hi[y]:.1f}% ({variants.label(hi['variant'])}).")
    if not pretrained and "top1_agreement" in df:
        pairs = sorted(equal_flops_pairs(df), key=lambda p: p["tome_gflops"])
        if pairs:
            tome_more = sum(p["tome_value"] > p["tomato_value"] for p in pairs)
            tomato_more = sum(p["tome_value"] < p["tomato_value"] for p in pairs)
            tied = len(pairs) - tome_more - tomato_more
            each = "; ".join(f"{variants.label(p['tome'])} {_changed(p['tome_value'], p['tome_n'])} at "
                             f"{p['tome_gflops']:.1f} GFLOPs vs {variants.label(p['tomato'])} "
                             f"{_changed(p['tomato_value'], p['tomato_n'])} at {p['tomato_gflops']:.1f}"
                             for p in pairs)
            lines.append(f"- At about equal FLOPs (within {EQUAL_FLOPS:.0%}; each ToMe point with its nearest "
                         f"ToMato point), ToMe keeps more agreement in {tome_more} of {len(pairs)} pairs, ToMato "
                         f"in {tomato_more}{f', {tied} tied' if tied else ''}: {each}.")
    if pretrained is False and first(said, "random reading"):
        lines.append("- With random-init weights the paper's reading (\"accuracy changes little as latency "
                     "falls\") cannot be checked: it needs trained DeiT-B on ImageNet data. The ratios and token "
                     "counts above are measured on this machine with these untrained weights; trained weights "
                     "keep other token counts, so their ratios would differ too.")
    elif pretrained is None:
        lines.append("- The run does not record whether its weights were trained, so its agreement and top-1 "
                     "cannot be read as accuracy.")
    return "\n".join(lines)
