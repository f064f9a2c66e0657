"""Beyond the paper: four questions it leaves open, answered from one recorded sweep.

1. Where to merge: ``tomato:keep=K,block=B`` for B in 0, 1, 2, 3, 6.
2. Which similarity: ``metric=attention|keys|cosine`` against the paper's distribution
   (``features``) at the same token budget.
3. ToMato then ToMe: ``hybrid:sim=S,r=R`` against either alone.
4. Choosing ``sim``: the token budget (``keep``) against a fixed ``sim``.

Variants whose token counts differ are compared **at equal GFLOPs**: the reference method's
top-1 is interpolated linearly between its two sweep points around the other's GFLOPs,
photo by photo (``w * right_lo + (1 - w) * right_hi``), so the difference stays paired and
its 95% interval comes from resampling photos (bootstrap). No curve is extrapolated.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..harness import variants
from . import miniature
from .runs import RecordedRun
from .stats import bootstrap_interval, paired, tally

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

BLOCKS: tuple[int, ...] = (0, 1, 2, 3, 6)
METRICS: tuple[str, ...] = ("features", "attention", "keys", "cosine")
_METRIC_LABELS = {"features": "softmax(XXᵀ), the paper's", "attention": "attention probabilities",
                  "keys": "key cosine (ToMe's)", "cosine": "feature cosine"}


def sweep_name(model: str) -> str:
    """The beyond-the-paper sweep of a model trained here, under ``data/results`` (its
    recording's folder, :mod:`tomato.harness.record`)."""
    return f"{model}/beyond"


def load(results: Path | str, model: str) -> RecordedRun | None:
    """The recorded sweep of ``model`` under ``results`` (None where absent)."""
    from .runs import recorded_run

    return recorded_run(Path(results), sweep_name(model))


def table(run: RecordedRun, seed: int = 0) -> pd.DataFrame:
    """:func:`tomato.book.miniature.table` plus what the questions sort by: ``block``,
    ``metric``, ``keep``, ``sim`` and ``r``."""
    df = miniature.table(run, seed)
    parsed = [variants.parse(s) for s in df["variant"]]
    df["block"] = [v.get("block", 0) if v.kind in ("tomato", "hybrid") else None for v in parsed]
    df["metric"] = [v.get("metric", "features") if v.kind in ("tomato", "hybrid") else None for v in parsed]
    for key, name in (("keep_ratio", "keep"), ("sim", "sim"), ("r", "r")):
        df[name] = [v.get(key) for v in parsed]
    return df


def view(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`tomato.book.miniature.view` with the spread of per-photo tokens beside it."""
    out = miniature.view(df)
    out.insert(out.columns.get_loc("cut after block 0 %"), "tokens sd", df["tokens_sd"].round(2).to_numpy())
    return out


def _right(run: RecordedRun, spec: str) -> np.ndarray:
    return run.predictions(spec).sort_values("index")["correct1"].to_numpy(float)


def curve(df: pd.DataFrame, mask: Any, with_baseline: bool = True) -> pd.DataFrame:
    """The rows of ``mask`` (plus the unpatched model, the curve's zero-merge end) by GFLOPs."""
    import pandas as pd

    rows = pd.concat([df[mask], df[df["kind"] == "deit"]]) if with_baseline else df[mask]
    return rows.drop_duplicates("variant").sort_values("gflops")


def versus_curve(run: RecordedRun, row: Any, reference: pd.DataFrame, seed: int = 0) -> dict[str, float] | None:
    """Top-1 of ``row`` minus the ``reference`` curve's at ``row``'s GFLOPs, paired photo
    by photo: ``{"diff", "low", "high", "ref_top1"}`` in points; None outside the curve."""
    g = float(row["gflops"])
    xs = reference["gflops"].to_numpy(float)
    if len(xs) < 2 or not xs.min() <= g <= xs.max():
        return None
    hi = int(np.searchsorted(xs, g))
    lo = max(hi - 1, 0)
    hi = min(max(hi, 1), len(xs) - 1)
    w = 1.0 if xs[hi] == xs[lo] else (xs[hi] - g) / (xs[hi] - xs[lo])
    ref = w * _right(run, reference.iloc[lo]["variant"]) + (1 - w) * _right(run, reference.iloc[hi]["variant"])
    d = (_right(run, row["variant"]) - ref) * 100
    low, high = bootstrap_interval(d, seed)
    return {"diff": float(d.mean()), "low": float(low), "high": float(high), "ref_top1": float(ref.mean() * 100)}


def _is(df: pd.DataFrame, kind: str, **fixed: Any) -> Any:
    mask = df["kind"] == kind
    for name, value in fixed.items():
        mask &= df[name].isna() if value is None else (df[name] == value)
    return mask


def _budget(df: pd.DataFrame) -> Any:
    """ToMato's keep sweep at block 0 with the paper's distribution."""
    return _is(df, "tomato", block=0, metric="features", sim=None, r=None)


def _fixed_sim(df: pd.DataFrame) -> Any:
    """ToMato's fixed-sim sweep at block 0 with the paper's distribution."""
    return _is(df, "tomato", block=0, metric="features", keep=None, r=None) & df["sim"].notna()


def _ci(d: dict[str, float]) -> str:
    return f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def pairs(run: RecordedRun, df: pd.DataFrame, question: str, seed: int = 0) -> pd.DataFrame:
    """The paired comparisons behind one question (``block``, ``metric``, ``hybrid`` or
    ``sim``): one row per point with its reference, GFLOPs and difference [95% CI]."""
    import pandas as pd

    out = []
    budget0 = curve(df, _budget(df))
    if question == "block":
        for b in BLOCKS[1:]:
            for _, row in df[_is(df, "tomato", block=b, metric="features")].iterrows():
                out.append((row, "ToMato keep sweep at block 0", versus_curve(run, row, budget0, seed)))
    elif question == "metric":
        for m in METRICS[1:]:
            for _, row in df[_is(df, "tomato", block=0, metric=m)].iterrows():
                ref = df[_is(df, "tomato", block=0, metric="features", keep=row["keep"])]
                if not ref.empty:
                    d = paired(_right(run, ref.iloc[0]["variant"]) > 0, _right(run, row["variant"]) > 0, seed)
                    out.append((row, ref.iloc[0]["label"], d))
    elif question == "hybrid":
        tome = curve(df, df["kind"] == "tome")
        for _, row in df[df["kind"] == "hybrid"].iterrows():
            out.append((row, "ToMe r sweep", versus_curve(run, row, tome, seed)))
            out.append((row, "ToMato keep sweep", versus_curve(run, row, budget0, seed)))
    elif question == "sim":
        fixed = curve(df, _fixed_sim(df))
        for _, row in df[_budget(df)].iterrows():
            if row["keep"] == row["keep"]:
                out.append((row, "ToMato fixed-sim sweep", versus_curve(run, row, fixed, seed)))
    else:
        raise ValueError(f"unknown question {question!r}; choose block, metric, hybrid or sim")
    columns = ["variant", "block", "against", "GFLOPs", "tokens after ToMato's merge", "tokens sd", "top-1 %", "Δ [95% CI]",
               "diff", "low", "high"]
    table = pd.DataFrame([[row["label"], row["block"], against, row["gflops"], row["tokens_mean"], row["tokens_sd"],
                           row["top1"], _ci(d), d["diff"], d["low"], d["high"]]
                          for row, against, d in out if d is not None], columns=columns)
    return table.astype({"block": "Int64"})  # a block is a whole number: "2", not "2.00"


def answer_values(run: RecordedRun | None, df: pd.DataFrame | None, seed: int = 0) -> dict[str, Any]:
    """The numbers and words of the page's answers, by name, for myst-nb's ``glue`` (the
    sentences live in the page's Markdown), from :func:`pairs` of each question: per
    question ``<q>_tally`` (:func:`~tomato.book.stats.tally`), ``<q>_best`` and
    ``<q>_worst`` (a variant with its difference and interval); the hybrid's tallies against ToMe's and
    ToMato's curves (``hybrid_tome_*``, ``hybrid_keep_*``); and the median per-photo token
    spread under a budget and a fixed sim (``sim_sd_budget``, ``sim_sd_fixed``). A value
    that no record gives is "not recorded"."""
    none = "not recorded"
    out: dict[str, Any] = {}

    def point(row: Any) -> str:
        return f"{row['variant']} {row['Δ [95% CI]']}"

    for q in ("block", "metric", "hybrid", "sim"):
        p = pairs(run, df, q, seed) if run is not None and df is not None else None
        ok = p is not None and not p.empty
        out[f"{q}_tally"] = tally(p) if ok else none
        out[f"{q}_best"] = point(p.loc[p["diff"].idxmax()]) if ok else none
        out[f"{q}_worst"] = point(p.loc[p["diff"].idxmin()]) if ok else none
        if q == "hybrid":
            for key, against in (("tome", "ToMe r sweep"), ("keep", "ToMato keep sweep")):
                h = p[p["against"] == against] if ok else None
                has = h is not None and not h.empty
                out[f"hybrid_{key}_tally"] = tally(h) if has else none
                out[f"hybrid_{key}_best"] = point(h.loc[h["diff"].idxmax()]) if has else none
    budget = df[_budget(df) & df["keep"].notna()] if df is not None else None
    fixed = df[_fixed_sim(df)] if df is not None else None
    out["sim_sd_budget"] = f"{budget['tokens_sd'].median():.1f}" if budget is not None and len(budget) else none
    out["sim_sd_fixed"] = f"{fixed['tokens_sd'].median():.1f}" if fixed is not None and len(fixed) else none
    return out


def plot(df: pd.DataFrame, question: str, *, title: str = "") -> Figure:
    """One figure per question: top-1 against GFLOPs, one curve per series (``block``,
    ``hybrid``, ``sim``), or Δ top-1 per metric at each budget (``metric``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    base = df[df["kind"] == "deit"].iloc[0]
    if question == "metric":
        keeps = sorted(df[_is(df, "tomato", block=0) & df["keep"].notna()]["keep"].unique(), reverse=True)
        for i, m in enumerate(METRICS):
            g = df[_is(df, "tomato", block=0, metric=m) & df["keep"].isin(keeps)].sort_values("keep", ascending=False)
            xs = [keeps.index(k) + (i - 1.5) * 0.15 for k in g["keep"]]
            ax.errorbar(xs, g["d_top1"], yerr=[g["d_top1"] - g["d_low"], g["d_high"] - g["d_top1"]], fmt="o",
                        capsize=3, label=_METRIC_LABELS[m])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(keeps)), [f"keep={k:g}" for k in keeps])
        ax.set(ylabel="Δ top-1 vs unpatched (points, 95% CI)", title="Which similarity: same token budget")
    else:
        series: dict[str, Any] = {}
        if question == "block":
            for b in BLOCKS:
                series[f"merge after block {b}"] = _is(df, "tomato", block=b, metric="features", sim=None, r=None)
        elif question == "hybrid":
            series = {"ToMe (r sweep)": df["kind"] == "tome",
                      "ToMato (keep sweep)": _budget(df),
                      "ToMato sim=1e-15 + ToMe (r sweep)": df["kind"] == "hybrid"}
        elif question == "sim":
            series = {"ToMato, fixed sim": _fixed_sim(df), "ToMato, token budget (keep)": _budget(df)}
        else:
            raise ValueError(f"unknown question {question!r}; choose block, metric, hybrid or sim")
        for name, mask in series.items():
            g = curve(df, mask)
            ax.plot(g["gflops"], g["top1"], marker="o", ms=4, label=name)
        ax.scatter([base["gflops"]], [base["top1"]], color="black", marker="*", s=120, zorder=5,
                   label="unpatched")
        ax.set(xlabel="GFLOPs per image", ylabel="val top-1 (%)", title="Top-1 against GFLOPs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def rerun_command(run: RecordedRun, model: str = "deit-tiny-imagenette") -> str:
    """The command that records the sweep again (with every other record of the model)."""
    return f"python -m tomato record --checkpoint {model} --data ../shared/imagenette/val"

