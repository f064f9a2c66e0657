"""Figure 3 of the paper, in its own setting: accuracy against latency *relative to DeiT-B*.

The paper plots top-1 against latency on a Jetson Nano for ToMe sweeping ``r`` and ToMato
sweeping ``sim``. Absolute seconds do not transfer between machines, ratios to the
unpatched model timed in the same run do, so every latency here is divided by the
baseline's: the paper's Table 1 points from its printed seconds, ours from one interleaved
timing run (with the paired bootstrap interval of the speed-up when it was recorded).

:func:`conclusion` writes the page's reading of the figure from those rows: nothing in it
is typed. pandas is imported inside functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..harness import variants
from . import paper

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Families whose points are ToMato (fixed sim, parallel visit, or sim chosen per image).
TOMATO_FAMILIES = ("tomato", "parallel", "keep", "tokens")
#: Two variants are "at equal FLOPs" when their GFLOPs differ by at most this fraction.
EQUAL_FLOPS = 0.10


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
    """Each ToMato variant with the ToMe variant nearest in GFLOPs, when within
    ``tolerance`` of each other: ``tomato``, ``tome`` (specs), their GFLOPs and
    ``column`` values. Uses ``gflops_eval`` (mean over evaluated images) when present."""
    import pandas as pd

    g = "gflops_eval" if "gflops_eval" in rows else "gflops"
    if g not in rows or column not in rows:
        return []
    df = rows.dropna(subset=[g, column]).copy()
    fam = df["variant"].map(lambda s: variants.parse(s).family)
    tome, tomato = df[fam == "tome"], df[fam.isin(TOMATO_FAMILIES)]
    pairs = []
    for _, a in tomato.iterrows():
        if tome.empty:
            break
        gap = (pd.to_numeric(tome[g]) - float(a[g])).abs()
        b = tome.loc[gap.idxmin()]
        if abs(float(b[g]) - float(a[g])) <= tolerance * max(float(a[g]), float(b[g])):
            pairs.append({"tomato": a["variant"], "tome": b["variant"],
                          "tomato_gflops": float(a[g]), "tome_gflops": float(b[g]),
                          "tomato_value": float(a[column]), "tome_value": float(b[column])})
    return pairs


def _ratio(row: Mapping[str, Any]) -> str:
    """``0.94`` or ``0.94 (95% interval 0.81-1.08)``."""
    text = f"{row['rel_latency']:.2f}"
    lo, hi = row.get("rel_low"), row.get("rel_high")
    if lo == lo and hi == hi and lo is not None and hi is not None:  # not NaN
        text += f" (95% interval {lo:.2f}–{hi:.2f})"
    return text


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


def conclusion(rows: pd.DataFrame, *, pretrained: bool | None, where: str = "this run") -> str:
    """Markdown bullets reading Figure 3 from ``rows`` (a sweep's rows merged with
    :func:`tomato.book.measures.prediction_agreement`, optionally with ``gflops_eval``)
    beside the paper's Table 1. Every number comes from ``rows`` or from the paper."""
    import pandas as pd

    pp = paper_points().set_index("variant")
    base_top1 = pp.loc[paper.BASELINE, "top1"]
    tomato_p, tome_p = pp.loc[paper.TOMATO], pp.loc[paper.TOME]
    lines = [f"- **The paper** (Jetson Nano, trained DeiT-B, Table 1): ToMato-B runs at "
             f"{tomato_p['rel_latency']:.3f} of DeiT-B's latency and ToMe-B at {tome_p['rel_latency']:.3f}, "
             f"for {tomato_p['top1'] - base_top1:+.2f} and {tome_p['top1'] - base_top1:+.2f} top-1 points."]
    df = relative_latency(rows)
    df["variant"] = [variants.canonical(s) for s in df["variant"]]
    timed = df.dropna(subset=["rel_latency"]).set_index("variant")
    shown = [s for s in (paper.TOMATO, paper.TOME) if s in timed.index]
    if shown:
        parts = [f"{variants.label(s)} at {_ratio(timed.loc[s])}, {_resolved(timed.loc[s])}" for s in shown]
        lines.append(f"- **{where}**: " + "; ".join(parts) + ".")
        fastest = timed[timed.index.map(lambda s: variants.parse(s).family in TOMATO_FAMILIES)]
        if not fastest.empty:
            best = fastest["rel_latency"].idxmin()
            lines.append(f"- The fastest ToMato point here is {variants.label(best)} at "
                         f"{_ratio(timed.loc[best])}, {_resolved(timed.loc[best])}.")
    else:
        lines.append(f"- **{where}** has no timing of the paper's variants.")
    y = "top1" if pretrained else "top1_agreement"
    what = "top-1" if pretrained else "top-1 agreement with the baseline"
    if y in df:
        tom = df[df["variant"].map(lambda s: variants.parse(s).family in TOMATO_FAMILIES)].dropna(subset=[y])
        if len(tom) > 1:
            lo, hi = tom.loc[tom[y].idxmin()], tom.loc[tom[y].idxmax()]
            lines.append(f"- Across its {len(tom)} ToMato points, {what} runs from {lo[y]:.1f}% "
                         f"({variants.label(lo['variant'])}) to {hi[y]:.1f}% ({variants.label(hi['variant'])}).")
    if not pretrained and "top1_agreement" in df:
        pairs = sorted(equal_flops_pairs(df), key=lambda p: p["tomato_gflops"])
        if pairs:
            tome_more = sum(p["tome_value"] > p["tomato_value"] for p in pairs)
            tomato_more = sum(p["tome_value"] < p["tomato_value"] for p in pairs)
            each = "; ".join(f"{variants.label(p['tome'])} {p['tome_value']:.1f}% at {p['tome_gflops']:.1f} GFLOPs "
                             f"vs {variants.label(p['tomato'])} {p['tomato_value']:.1f}% at {p['tomato_gflops']:.1f}"
                             for p in pairs)
            lines.append(f"- At about equal FLOPs (within {EQUAL_FLOPS:.0%}), ToMe keeps more agreement in "
                         f"{tome_more} of {len(pairs)} pairs, ToMato in {tomato_more}"
                         f"{f', {len(pairs) - tome_more - tomato_more} tied' if len(pairs) > tome_more + tomato_more else ''}"
                         f": {each}.")
    if not pretrained:
        lines.append("- With random-init weights the paper's reading (\"accuracy changes little as latency "
                     "falls\") cannot be checked: it needs trained DeiT-B on ImageNet data. The latency ratios "
                     "and token counts above are real for this machine.")
    return "\n".join(lines)

