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


def conclusion(rows: pd.DataFrame, *, pretrained: bool | None, where: str = "this run") -> str:
    """Markdown bullets reading Figure 3 from ``rows`` (a sweep's rows merged with
    :func:`tomato.book.measures.prediction_agreement`, optionally with ``gflops_eval``)
    beside the paper's Table 1. Every number comes from ``rows`` or from the paper.
    ``pretrained``: True (trained weights), False (random-init) or None (not recorded)."""
    pp = paper_points().set_index("variant")
    base_top1 = pp.loc[paper.BASELINE, "top1"]
    tomato_p, tome_p = pp.loc[paper.TOMATO], pp.loc[paper.TOME]
    lines = [f"- **The paper** (Jetson Nano, trained DeiT-B, Table 1): ToMato-B runs at "
             f"{tomato_p['rel_latency']:.3f} of DeiT-B's latency and ToMe-B at {tome_p['rel_latency']:.3f}, "
             f"for {tomato_p['top1'] - base_top1:+.2f} and {tome_p['top1'] - base_top1:+.2f} top-1 points."]
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
                         f"{_ratio(fastest.loc[best])}, {_resolved(fastest.loc[best])}{_timed_on(fastest.loc[best])}. "
                         "(The smallest of several noisy ratios flatters its winner.)")
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
    if pretrained is False:
        lines.append("- With random-init weights the paper's reading (\"accuracy changes little as latency "
                     "falls\") cannot be checked: it needs trained DeiT-B on ImageNet data. The ratios and token "
                     "counts above are measured on this machine with these untrained weights; trained weights "
                     "keep other token counts, so their ratios would differ too.")
    elif pretrained is None:
        lines.append("- The run does not record whether its weights were trained, so its agreement and top-1 "
                     "cannot be read as accuracy.")
    return "\n".join(lines)
