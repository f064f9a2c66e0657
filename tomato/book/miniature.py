"""The paper's Table 1 in miniature, on the model trained here: paired accuracy differences.

Every variant of a sweep is scored on the same val photos, so its difference from the
unpatched model is *paired*: per photo, each model is right or wrong. This module gives
each difference a paired 95% bootstrap interval (photos resampled with their pair) and an
exact McNemar test (the discordant pairs, binomial at 1/2), puts ToMe beside ToMato at equal
GFLOPs, adds the null baselines at ToMato's per-photo token count from the fidelity record,
and writes the page's answer from those rows.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..harness import flops, speed, variants
from . import paper
from .paper import within_paper_range
from .runs import RecordedRun, record, recorded_run, records
from .stats import EQUAL_FLOPS, paired, speed_word, tally, word

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

_NULL_LABELS = {"tomato": "ToMato (fidelity run)", "random_groups": "random groups, ToMato's sizes",
                "random_keep": "k random tokens kept", "first_keep": "first k tokens kept",
                "tome": "ToMe, r matching ToMato's tokens"}


def _correct(run: RecordedRun, spec: str) -> pd.DataFrame:
    df = run.predictions(spec)
    return df.set_index("index")[["correct1", "tokens"]]


def table(run: RecordedRun, seed: int = 0) -> pd.DataFrame:
    """One row per variant of ``run``: top-1/top-5, the paired difference from the baseline
    with its interval and McNemar p, tokens kept (mean, 5th-95th percentile), GFLOPs and
    the batch-1 speed-up with its interval."""
    import pandas as pd

    rows = run.rows()
    rows = rows[rows["complete"].astype(bool)]  # a variant still being evaluated is not a result yet
    base = _correct(run, paper.BASELINE)
    out = []
    for _, r in rows.iterrows():
        pred = _correct(run, r["variant"]).reindex(base.index)
        if pred["correct1"].isna().any():
            raise ValueError(f"{run.name}: {r['variant']} was scored on other photos than the baseline")
        d = paired(base["correct1"].to_numpy(), pred["correct1"].to_numpy(), seed)
        tokens = pred["tokens"].to_numpy(float)
        out.append({"variant": r["variant"], "label": r["label"], "kind": r["kind"], "top1": r["top1"],
                    "top5": r["top5"], "d_top1": d["diff"], "d_low": d["low"], "d_high": d["high"], "p": d["p"],
                    "tokens_mean": float(np.mean(tokens)), "tokens_sd": float(np.std(tokens)), "tokens_p5": float(np.percentile(tokens, 5)),
                    "tokens_p95": float(np.percentile(tokens, 95)),
                    "cut_pct": float(np.mean(paper.token_cut(tokens))), "gflops": r["gflops"],
                    "speedup": r.get("speedup"), "speedup_low": r.get("speedup_low"),
                    "speedup_high": r.get("speedup_high"), "n": len(base)})
    return pd.DataFrame(out)


def batch_timing(results: Path | str, run: RecordedRun, batch: int = 8) -> tuple[Path, dict[str, Any]] | None:
    """The newest robust timing record under ``results`` of ``run``'s weights, on the
    device of its own batch-1 timing, that timed batch ``batch``, as (path, record); None
    when there is none."""
    sha = run.provenance.get("weights_sha256")
    device = (run.timing_config or {}).get("device", "cpu")  # the batch-1 speed-ups' device
    found = [(path, rec) for path, rec in records("timing", results)
             if rec["config"].get("protocol") == "robust" and rec["config"].get("weights_sha256") == sha
             and str(rec["config"].get("device", "cpu")) == str(device) and speed.at_batch(rec["rows"], batch)]
    return max(found, key=lambda f: str((f[1].get("provenance") or {}).get("date_utc", ""))) if found else None


def with_batch(df: pd.DataFrame, timing: dict[str, Any] | None, batch: int = 8) -> pd.DataFrame:
    """``df`` (:func:`table`) with the speed-up at batch ``batch`` from a ``timing`` record
    (``speedup_b{batch}``, ``_low``, ``_high``; NaN for a variant it did not time)."""
    rows = {variants.canonical(r["variant"]): r for r in speed.at_batch((timing or {}).get("rows", []), batch)}
    out = df.copy()
    for key, col in (("speedup", ""), ("speedup_low", "_low"), ("speedup_high", "_high")):
        out[f"speedup_b{batch}{col}"] = [float(rows[v][key]) if v in rows and rows[v].get(key) is not None
                                         else float("nan") for v in df["variant"]]
    return out


def view(df: pd.DataFrame) -> pd.DataFrame:
    """The table as the page prints it: short headers, intervals as text."""
    import pandas as pd

    def ci(v: float, lo: float, hi: float, digits: int = 2, sign: bool = True) -> str:
        f = f"{{:{'+' if sign else ''}.{digits}f}}"
        return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"

    return pd.DataFrame({
        "variant": df["label"], "top-1 %": df["top1"].round(2), "top-5 %": df["top5"].round(2),
        "Δ top-1 [95% CI]": [ci(*x) for x in zip(df["d_top1"], df["d_low"], df["d_high"])],
        "McNemar p": [f"{p:.2g}" for p in df["p"]],
        "tokens after block 0 (p5–p95)": [f"{m:.1f} ({a:.0f}–{b:.0f})" for m, a, b in
                            zip(df["tokens_mean"], df["tokens_p5"], df["tokens_p95"])],
        "cut after block 0 %": df["cut_pct"].round(1), "GFLOPs": df["gflops"],  # rounded where shown, like every table
        "speed-up b1 [95% CI]": [ci(s, lo, hi, 3, False) if s == s else "–"
                                 for s, lo, hi in zip(df["speedup"], df["speedup_low"], df["speedup_high"])],
        **({"speed-up b8 [95% CI]": [ci(s, lo, hi, 3, False) if s == s else "–" for s, lo, hi in
                                     zip(df["speedup_b8"], df["speedup_b8_low"], df["speedup_b8_high"])]}
           if "speedup_b8" in df else {}),
    })


def equal_flops(df: pd.DataFrame, run: RecordedRun, tolerance: float = EQUAL_FLOPS, seed: int = 0) -> pd.DataFrame:
    """Each ToMato point beside the ToMe point of nearest GFLOPs (within ``tolerance``),
    with the paired difference ToMato - ToMe on the same photos."""
    import pandas as pd

    tome = df[df["kind"] == "tome"]
    out = []
    for _, t in df[df["kind"] == "tomato"].iterrows():
        if tome.empty:
            break
        m = tome.iloc[int((tome["gflops"] - t["gflops"]).abs().argmin())]
        if abs(m["gflops"] / t["gflops"] - 1) > tolerance:
            continue
        a = _correct(run, t["variant"])
        b = _correct(run, m["variant"]).reindex(a.index)
        d = paired(b["correct1"].to_numpy(), a["correct1"].to_numpy(), seed)
        out.append({"tomato": t["label"], "tome": m["label"], "tomato_gflops": t["gflops"], "tome_gflops": m["gflops"],
                    "tomato_top1": t["top1"], "tome_top1": m["top1"], "diff": d["diff"], "low": d["low"],
                    "high": d["high"], "p": d["p"]})
    return pd.DataFrame(out)


def _scored(fidelity: Mapping[str, Any]) -> pd.DataFrame:
    """A fidelity record's per-photo rows with ``right`` (top-1 equals the label) and
    ``base_right`` (the unpatched model's top-1 does)."""
    import pandas as pd

    rows = pd.DataFrame(fidelity["rows"])
    rows["right"] = rows["top1"] == rows["label"]
    rows["base_right"] = rows["top1_base"] == rows["label"]
    return rows


def nulls(fidelity: Mapping[str, Any], seed: int = 0) -> pd.DataFrame:
    """Top-1 of ToMato, the null baselines and ToMe at ToMato's per-photo token count, from
    a fidelity record (paired with the unpatched model on the same photos)."""
    import pandas as pd

    rows = _scored(fidelity)
    out = []
    for (setting, variant), g in rows.groupby(["setting", "variant"], sort=False):
        d = paired(g["base_right"].to_numpy(), g["right"].to_numpy(), seed)
        r = int(g["tome_r"].iloc[0]) if "tome_r" in g and g["tome_r"].notna().any() else None
        label = _NULL_LABELS.get(variant, variant)
        out.append({"setting": setting, "variant": variant,
                    "label": label.replace("ToMe, r", f"ToMe r={r},") if r is not None else label,
                    "top1": 100 * g["right"].mean(), "d_top1": d["diff"], "d_low": d["low"], "d_high": d["high"],
                    "p": d["p"], "tokens_mean": g["tokens"].mean(), "n": len(g), "tome_r": r})
    return pd.DataFrame(out)


def null_pairs(fidelity: Mapping[str, Any], seed: int = 0) -> pd.DataFrame:
    """ToMato against each null baseline at the same setting, paired on the same photos:
    does *which* tokens ToMato merges matter, at its own per-photo token count? Columns:
    ``setting``, ``null`` (its label), ``diff`` (ToMato's top-1 minus the null's, points),
    ``low``, ``high`` (95% paired bootstrap), ``p`` (McNemar), ``n``."""
    import pandas as pd

    rows = _scored(fidelity)
    out = []
    for setting, g in rows.groupby("setting", sort=False):
        ours = g[g["variant"] == "tomato"].set_index("index")["right"]
        for variant, h in g[~g["variant"].isin(["tomato", "tome"])].groupby("variant", sort=False):
            both = pd.concat([ours, h.set_index("index")["right"]], axis=1, join="inner").to_numpy(bool)
            d = paired(both[:, 1], both[:, 0], seed)
            out.append({"setting": setting, "null": _NULL_LABELS.get(variant, variant), "diff": d["diff"],
                        "low": d["low"], "high": d["high"], "p": d["p"], "n": len(both)})
    return pd.DataFrame(out, columns=["setting", "null", "diff", "low", "high", "p", "n"])


def paper_beside(df: pd.DataFrame, flops: pd.DataFrame) -> pd.DataFrame:
    """The paper's three Table 1 rows beside ours (DeiT-Ti trained here), plus ToMe at ToMato's FLOPs."""
    import pandas as pd

    ours = df.set_index("variant")
    rows = []
    for row in paper.TABLE1:
        spec = variants.canonical(row["variant"])
        mine = ours.loc[spec] if spec in ours.index else None
        rows.append({"paper (DeiT-B, ImageNet-Mini)": row["model"], "paper top-1": row["top1"],
                     "paper top-5": row["top5"],
                     "ours (DeiT-Ti, Imagenette)": ("unpatched" if spec == paper.BASELINE else mine["label"])
                     if mine is not None else "not run",
                     "our top-1": mine["top1"] if mine is not None else np.nan,
                     "our top-5": mine["top5"] if mine is not None else np.nan,
                     "our Δ top-1 [95% CI]": (f"{mine['d_top1']:+.2f} [{mine['d_low']:+.2f}, {mine['d_high']:+.2f}]"
                                              if mine is not None and spec != paper.BASELINE else "–")})
    match = flops[flops["tomato"] == ours.loc[variants.canonical(paper.TOMATO), "label"]] if not flops.empty else flops
    if not match.empty:
        m = match.iloc[0]
        tome = ours[ours["label"] == m["tome"]].iloc[0]
        if tome.name == variants.canonical(paper.TOME):  # the paper's own ToMe row: say so there, once
            at = next(i for i, r in enumerate(rows) if r["ours (DeiT-Ti, Imagenette)"] == m["tome"])
            rows[at]["ours (DeiT-Ti, Imagenette)"] += " (also at ToMato's GFLOPs)"
            return pd.DataFrame(rows)
        rows.append({"paper (DeiT-B, ImageNet-Mini)": "(not in the paper)", "paper top-1": np.nan,
                     "paper top-5": np.nan, "ours (DeiT-Ti, Imagenette)": f"{m['tome']} (ToMato's GFLOPs)",
                     "our top-1": tome["top1"], "our top-5": tome["top5"],
                     "our Δ top-1 [95% CI]": f"{tome['d_top1']:+.2f} [{tome['d_low']:+.2f}, {tome['d_high']:+.2f}]"})
    return pd.DataFrame(rows)


def _setting_spec(setting: str) -> str:
    """A fidelity setting (``sim=1e-07``, ``keep_ratio=0.7``) as a canonical ToMato spec."""
    try:
        return variants.canonical("tomato:" + setting.replace("keep_ratio", "keep"))
    except ValueError:
        return setting


def _pts(x: float) -> str:
    return f"{x:+.2f}"


def _at_cut(df: pd.DataFrame, target_cut: float) -> pd.Series | None:
    """The ToMato row whose mean token cut is nearest ``target_cut`` %, unless it is the
    paper's sim=1e-7 (said already) or there is none."""
    tomato = df[df["kind"] == "tomato"]
    if tomato.empty:
        return None
    near = tomato.iloc[int((tomato["cut_pct"] - target_cut).abs().argmin())]
    return None if near["variant"] == variants.canonical(paper.TOMATO) else near


def plot_figure3(df: pd.DataFrame, null_rows: pd.DataFrame | None = None, *, title: str = "") -> Figure:
    """Top-1 against GFLOPs (left) and against the batch-1 speed-up (right): ToMe's r sweep,
    ToMato's sim and keep sweeps as curves, the null baselines as points, the paper's three
    points on the speed-up axis (relative latency inverted)."""
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    families = {
        "ToMe (r sweep)": (df["kind"] == "tome"),
        "ToMato (sim sweep)": (df["kind"] == "tomato") & df["variant"].str.contains("sim=")
        & ~df["variant"].str.contains("method="),
        "ToMato (keep sweep)": (df["kind"] == "tomato") & df["variant"].str.contains("keep"),
    }
    styles = {"ToMe (r sweep)": ("tab:green", "s"), "ToMato (sim sweep)": ("tab:red", "o"),
              "ToMato (keep sweep)": ("tab:purple", "^")}
    base = df[df["kind"] == "deit"].iloc[0]
    for axis, x in ((ax, "gflops"), (bx, "speedup")):
        axis.scatter([base[x]], [base["top1"]], color="black", marker="*", s=120, zorder=5, label="DeiT-Ti (unpatched)")
        for name, mask in families.items():
            g = df[mask].sort_values(x)
            colour, marker = styles[name]
            axis.plot(g[x], g["top1"], marker=marker, color=colour, label=name, ms=5)
            if x == "speedup":
                axis.errorbar(g[x], g["top1"], xerr=[(g[x] - g["speedup_low"]).clip(lower=0),
                                                     (g["speedup_high"] - g[x]).clip(lower=0)],
                              fmt="none", ecolor=colour, alpha=0.4)
        axis.grid(alpha=0.3)
    if null_rows is not None and not null_rows.empty:
        # A null baseline keeps ToMato's token count photo by photo: ToMato's GFLOPs.
        gflops = dict(zip(df["variant"], df["gflops"]))
        for variant, marker in (("random_groups", "x"), ("random_keep", "+"), ("first_keep", "1")):
            g = null_rows[null_rows["variant"] == variant]
            xs = [gflops.get(_setting_spec(s), np.nan) for s in g["setting"]]
            if not g.empty:
                ax.scatter(xs, g["top1"], marker=marker, color="tab:brown", s=60, label=_NULL_LABELS[variant])
    for row in paper.TABLE1[1:]:
        rel = row["latency_s"] / paper.TABLE1[0]["latency_s"]
        bx.scatter([1 / rel], [base["top1"] + row["top1"] - paper.TABLE1[0]["top1"]], marker="D",
                   facecolor="none", edgecolor="tab:blue", s=50)
        bx.annotate(f"paper: {row['model']}", (1 / rel, base["top1"] + row["top1"] - paper.TABLE1[0]["top1"]),
                    fontsize=7, xytext=(4, -10), textcoords="offset points", color="tab:blue")
    ax.set(xlabel="GFLOPs per image (from the tokens each photo kept)", ylabel="val top-1 (%)",
           title="Top-1 against GFLOPs")
    bx.set(xlabel="speed-up over the unpatched model, batch 1, this CPU (95% CI)", ylabel="val top-1 (%)",
           title="Top-1 against speed-up (paper: its drop from DeiT-B)")
    ax.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def tome_reach(run: RecordedRun | None) -> dict[str, str]:
    """How far ToMe's recorded r sweep goes, for page 10's Markdown: the largest r recorded
    (``top``), its mean tokens per block (``mean``, of ``tokens`` over ``depth`` blocks, ``cut``
    % fewer) and the tokens left after the last block (``last``), by ToMe's schedule
    (:func:`tomato.harness.flops.tokens_schedule_tome`) on the run's own token count, and the
    largest r every block applies in full (``full``: ToMe caps a block's r at half its
    tokens). Every value "not recorded" without a run, a ToMe row or the baseline."""
    keys = ("top", "mean", "tokens", "depth", "cut", "last", "full")
    found = run.variants if run is not None else {}
    rs = sorted(int(variants.parse(s).get("r")) for s in found if variants.parse(s).kind == "tome")
    if not rs or paper.BASELINE not in found:
        return dict.fromkeys(keys, "not recorded")
    first = float(run.predictions(paper.BASELINE)["tokens_per_block"].iloc[0])  # patches + prefix tokens
    dims = dataclasses.replace(flops.DEIT_B, num_prefix_tokens=int(round(first)) - flops.DEIT_B.num_patches)

    def full(r: int) -> bool:
        return all(n_in - n_out == r for n_in, n_out in flops.tokens_schedule_tome(dims, r))

    sched = flops.tokens_schedule_tome(dims, rs[-1])
    mean = sum(n for _, n in sched) / len(sched)
    values = (rs[-1], f"{mean:.1f}", dims.num_tokens, dims.depth, f"{100 * (1 - mean / dims.num_tokens):.0f}",
              f"{sched[-1][1]:.0f}", max(r for r in range(1, dims.num_tokens) if full(r)))
    return {k: str(v) for k, v in zip(keys, values)}


def token_cuts(run: RecordedRun, spec: str) -> np.ndarray:
    """Per-photo token cut in % of ``spec`` (ToMato's distribution, beside the paper's 8.16–20.92%)."""
    pred = run.predictions(spec)
    return paper.token_cut(pred["tokens"])


def plot_token_cuts(run: RecordedRun, df: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Per-photo token cut of each fixed-sim ToMato row of ``df`` (:func:`table`) as
    histograms beside the paper's 8.16–20.92%, and their table: per variant the smallest,
    median and largest cut (%) and the share of photos inside the paper's range."""
    import matplotlib.pyplot as plt
    import pandas as pd

    labels = df.set_index("variant")["label"]
    lo, hi = paper.TOKEN_CUT_SIM_1E7
    fig, ax = plt.subplots(figsize=(7, 3.2))
    rows = []
    for spec in (s for s in df["variant"] if s.startswith("tomato:sim=") and "method=" not in s):
        cuts = token_cuts(run, spec)
        ax.hist(cuts, bins=40, range=(0, 100), histtype="step", label=labels[spec])
        rows.append({"variant": labels[spec], "smallest cut %": float(np.min(cuts)),
                     "median cut %": float(np.median(cuts)), "largest cut %": float(np.max(cuts)),
                     f"photos inside {lo}–{hi}% (%)": within_paper_range(cuts)})
    ax.axvspan(lo, hi, color="grey", alpha=0.2, label=f"paper: {lo}–{hi}%")
    ax.set(xlabel="tokens cut per photo (%)", ylabel="photos", title="ToMato's token cut per photo")
    ax.legend(fontsize=7)
    return fig, pd.DataFrame(rows)


# the records -------------------------------------------------------------------------------------
def sweep_name(model: str) -> str:
    """The Table-1 sweep of a model trained here, under ``data/results`` (its recording's
    folder, :mod:`tomato.harness.record`)."""
    return f"{model}/table1"


def fidelity_name(model: str) -> str:
    """The fidelity record (null baselines) of the full-val study of a model trained here."""
    return f"{model}/fidelity_imagenette-val.json"


def load(results: Path | str, model: str) -> tuple[RecordedRun | None, dict[str, Any] | None]:
    """The sweep and the fidelity record of ``model`` under ``results`` (None where absent)."""
    return recorded_run(results, sweep_name(model)), record("fidelity", Path(results) / fidelity_name(model))


def answer_values(df: pd.DataFrame | None, flops: pd.DataFrame | None,
                  target_cut: float = paper.TOKEN_CUT_MIDDLE, nulls: pd.DataFrame | None = None) -> dict[str, Any]:
    """The numbers and verdict words of the book's short answer, by name, for myst-nb's
    ``glue`` (the sentences live in the Markdown that pastes them): the baseline's top-1
    and photos; at the paper's sim=1e-7 (``sim7_*``) and at the sim nearest the paper's
    token cut (``near_*``) the cut and the paired top-1 change with its interval and word;
    ToMe at equal GFLOPs (``tome_*``); the speed-up at batch 1 and 8 (``speed_b1_*``,
    ``speed_b8_*``: unpatched time / ToMato time, with the word), and ToMe r=2's at batch 1
    (``tome2_speed_*``); and from :func:`null_pairs`
    (``nulls``) ToMato at sim=1e-7 against k random tokens and the first k tokens kept at its
    own per-photo count (``null_random_*``, ``null_first_*``: ahead, behind or level). A
    value that no record gives is "not recorded"."""
    none = "not recorded"
    out: dict[str, Any] = {}
    ours = df.set_index("variant") if df is not None else None
    spec = variants.canonical(paper.TOMATO)

    def interval(point: str, prefix: str, row: Any, cols: tuple[str, str, str], fmt: Any = _pts) -> None:
        """``point``, ``<prefix>_low``, ``<prefix>_high`` from ``row``'s three ``cols``."""
        keys = (point, f"{prefix}_low", f"{prefix}_high")
        out.update({k: none if row is None else fmt(row[c]) for k, c in zip(keys, cols)})

    has = ours is not None and spec in ours.index
    out["base_top1"] = f"{ours.loc[paper.BASELINE, 'top1']:.1f}" if ours is not None else none
    out["photos"] = f"{int(df['n'].iloc[0]):,}" if df is not None else none
    for prefix, t in (("sim7", ours.loc[spec] if has else None),
                      ("near", _at_cut(df, target_cut) if df is not None else None)):
        out[f"{prefix}_label"] = none if t is None else str(t["label"])
        out[f"{prefix}_cut"] = none if t is None else f"{t['cut_pct']:.1f}"
        interval(f"{prefix}_d", prefix, t, ("d_top1", "d_low", "d_high"))
        out[f"{prefix}_word"] = none if t is None else word(t["d_low"], t["d_high"])
    out["tome_tally"] = tally(flops) if flops is not None and not flops.empty else none
    at = flops[flops["tomato"] == ours.loc[spec, "label"]] if has and flops is not None else None
    pair = at.iloc[0] if at is not None and not at.empty else None
    out["tome_pair"] = none if pair is None else str(pair["tome"])
    interval("tome_d", "tome", pair, ("diff", "low", "high"))
    for key, label in (("random", _NULL_LABELS["random_keep"]), ("first", _NULL_LABELS["first_keep"])):
        hit = (nulls[(nulls["setting"] == "sim=1e-07") & (nulls["null"] == label)]
               if nulls is not None and not nulls.empty else None)
        r = hit.iloc[0] if hit is not None and len(hit) else None
        interval(f"null_{key}_d", f"null_{key}", r, ("diff", "low", "high"))
        out[f"null_{key}_word"] = none if r is None else word(r["low"], r["high"], ("ahead of", "behind", "level with"))
    for b, col in ((1, "speedup"), (8, "speedup_b8")):
        t = ours.loc[spec] if has and col in ours.columns and ours.loc[spec, col] == ours.loc[spec, col] else None
        # Three decimals: an interval that ends at 0.999 must not print as 1.00 beside "slower".
        interval(f"speed_b{b}", f"speed_b{b}", t, (col, f"{col}_low", f"{col}_high"), fmt=lambda v: f"{v:.3f}")
        out[f"speed_b{b}_word"] = none if t is None else speed_word(t[col], t[col + "_low"], t[col + "_high"])
    # ToMe r=2 at batch 1 (``tome2_speed*``): it merges in every block, so its cost is not ToMato's.
    tome = variants.canonical(paper.TOME)
    t = ours.loc[tome] if ours is not None and tome in ours.index and ours.loc[tome, "speedup"] == \
        ours.loc[tome, "speedup"] else None
    interval("tome2_speed", "tome2_speed", t, ("speedup", "speedup_low", "speedup_high"), fmt=lambda v: f"{v:.3f}")
    out["tome2_speed_word"] = none if t is None else speed_word(t["speedup"], t["speedup_low"], t["speedup_high"])
    return out


