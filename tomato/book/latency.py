"""Tables, glued values, warnings and figures of the latency pages: the paper's decoded
reports beside our runs of both protocols (:mod:`tomato.harness.speed`), and when ToMato
pays off. The pages' sentences live in their Markdown; what a page says about one of our
runs comes from that run's recorded configuration (:func:`tomato.harness.speed.describe`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..harness import speed, variants
from . import paper, runs

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["per_forward_table", "paper_summary_table", "reports_table", "pairwise_table", "paper_values",
           "speedup_table", "recorded_timings", "plot_forwards", "merge_share_table",
           "baseline_column", "machine_load",
           "load_warning", "steady_runs", "payoff_table", "payoff_verdicts", "plot_payoff", "plot_latency"]


def per_forward_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Paper-protocol rows -> one line per forward, one column of seconds per variant."""
    import pandas as pd

    df = pd.DataFrame(rows)
    table = df.pivot(index="forward", columns="variant", values="seconds")
    return table[list(dict.fromkeys(df["variant"]))].reset_index()


def baseline_column(variant: str) -> str:
    """Name of :func:`paper_summary_table`'s last column: each mean relative to ``variant``'s
    (the rows' first variant), e.g. "mean vs deit %"."""
    return f"mean vs {variant} %"


def paper_summary_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per variant: mean (the paper's statistic), mean of forwards 1-, median, sd, range,
    merge step and its share, tokens kept; with each mean relative to the first variant's,
    in a column named after that variant (:func:`baseline_column`)."""
    import pandas as pd

    s = pd.DataFrame(speed.paper_summary(rows))
    base = s["mean_s"].iloc[0]
    return pd.DataFrame({
        "variant": s["variant"], "forwards": s["forwards"], "mean s": s["mean_s"],
        "mean s (from forward 1)": s["mean_after_first_s"], "median s": s["median_s"], "sd s": s["sd_s"],
        "min s": s["min_s"], "max s": s["max_s"], "merge ms": s["merge_ms"],
        "merge % of forward": 100 * s["merge_share"], "tokens": s["tokens"],
        baseline_column(str(s["variant"].iloc[0])): 100 * (s["mean_s"] / base - 1.0)})


def reports_table() -> pd.DataFrame:
    """The authors' five reports: mean, mean of forwards 1-10, median, sd, range, merge step."""
    import pandas as pd

    r = pd.DataFrame(paper.report_rows())
    return pd.DataFrame({
        "report": r["report"], "forwards": r["forwards"], "mean s": r["mean_s"],
        "mean s (1-10)": r["mean_after_first_s"], "median s": r["median_s"], "sd s": r["sd_s"],
        "min s": r["min_s"], "max s": r["max_s"], "merge ms (median)": r["merge_ms"],
        "merge % of forward": 100 * r["merge_share"]})


def pairwise_table(seed: int = 0) -> pd.DataFrame:
    """Every pair of reports: difference of mean forwards, its bootstrap 95% interval, Welch's t, df, p."""
    import pandas as pd

    p = pd.DataFrame(paper.pairwise(seed))
    return pd.DataFrame({"report a": p["a"], "report b": p["b"], "a − b s": p["diff"],
                         "95% CI low": p["ci_low"], "95% CI high": p["ci_high"], "Welch t": p["t"],
                         "df": p["df"], "p": p["p"]})


def paper_values(seed: int = 0) -> dict[str, str]:
    """The numbers (and the verdict words) page 08's Markdown glues about the authors'
    reports and Table 1's gaps, from :mod:`tomato.book.paper`: seconds to two decimals
    unless named ``_ms`` or ``_pct``; ``tome_*`` is Table 1's ToMe-B - ToMato-B gap,
    ``deit_*`` its DeiT-B - ToMato-B gap, each set against ``means_span`` (how far apart the
    five ToMato reports' means land) and, for ToMe-B, Welch's t under the assumption that
    each Table-1 mean came from 11 forwards as spread as the reports'."""
    s, pairs = paper.spread(), paper.pairwise(seed)
    tome, deit = paper.table1_gap("ToMe-B", "ToMato-B"), paper.table1_gap("DeiT-B", "ToMato-B")
    span = tome["report_means_range_s"]
    distinct = sum(p["ci_low"] > 0 or p["ci_high"] < 0 for p in pairs)

    def within(g: dict[str, float]) -> str:
        return "is within" if abs(g["gap_s"]) < span else "exceeds"

    return {
        "reports": f"{s['reports']:.0f}", "forward_min": f"{s['forward_min_s']:.1f}",
        "forward_max": f"{s['forward_max_s']:.1f}", "mean_min": f"{s['mean_min_s']:.2f}",
        "mean_max": f"{s['mean_max_s']:.2f}", "merge_min_ms": f"{s['merge_min_ms']:.0f}",
        "merge_max_ms": f"{s['merge_max_ms']:.0f}", "share_min_pct": f"{100 * s['share_min']:.1f}",
        "share_max_pct": f"{100 * s['share_max']:.1f}", "max_deviation": f"{s['max_deviation_s']:.2f}",
        "sd_min": f"{s['sd_min_s']:.2f}", "sd_max": f"{s['sd_max_s']:.2f}",
        "pooled_sd": f"{tome['pooled_sd_s']:.2f}", "se_of_mean": f"{tome['se_of_mean_s']:.2f}",
        "means_span": f"{span:.2f}", "pairs_distinct": str(distinct), "pairs": str(len(pairs)),
        "tome_gap": f"{tome['gap_s']:.2f}", "tome_t": f"{tome['t']:.1f}", "tome_df": f"{tome['df']:.0f}",
        "tome_p": f"{tome['p']:.3f}", "tome_within": within(tome),
        "tome_pct": f"{100 * tome['gap_s'] / paper.PAPER_TABLE1_S['ToMe-B']:.1f}",
        "deit_gap": f"{deit['gap_s']:.2f}", "deit_times_span": f"{deit['gap_s'] / span:.1f}",
        "deit_within": within(deit), "deit_pct": f"{100 * deit['gap_s'] / paper.PAPER_TABLE1_S['DeiT-B']:.1f}",
    }


def machine_load(provenance: Mapping[str, Any]) -> tuple[list[float], int] | None:
    """The load averages over 1/5/15 min and the CPU count a record's provenance holds
    (under ``machine``, as :func:`tomato.harness.machine.machine_info` writes them), or None
    when either is missing."""
    machine = provenance.get("machine") or {}
    load = machine.get("load_average_1_5_15_min", provenance.get("load_average_1_5_15_min"))
    cores = machine.get("cpu_count", provenance.get("cpu_count"))
    if not isinstance(load, (list, tuple)) or not load or not isinstance(cores, int) or cores < 1:
        return None
    return [float(x) for x in load], cores


def load_warning(provenance: Mapping[str, Any], said: set[str] | None = None) -> str:
    """Markdown warning when any recorded load average exceeds the record's CPU count
    (more runnable work than cores while the run was recorded); "" otherwise; one line when
    the page has ``said`` it already (:func:`tomato.book.tables.first`)."""
    from .tables import first

    found = machine_load(provenance)
    if found is None:
        return ""
    load, cores = found
    if max(load) <= cores:
        return ""
    where = f"{', '.join(f'{x:.1f}' for x in load)} with {cores} CPU core{'s' if cores != 1 else ''}"
    if not first(said, "overloaded"):
        return f"**Overloaded machine** (load {where}): read its times as the warning above says."
    return ("**Warning: the machine was overloaded.** Its load average over 1/5/15 min was "
            f"{where} (recorded with the run): more runnable work than cores, so other processes shared the CPU with "
            "these forwards. Its times, and the differences between its variants, measure that competition as "
            "much as the models; they are no evidence for or against a speed-up.")


def steady_runs(recorded: Sequence[tuple[Path, dict[str, Any]]]) -> tuple[list[tuple[Path, dict[str, Any]]], str]:
    """The (path, record) pairs whose machine was not overloaded (:func:`load_warning`), and
    Markdown naming the ones left out and why ("" when none is): an overloaded run's times
    measure the competition for the CPU, so they stand in no table or figure."""
    kept = [(p, r) for p, r in recorded if not load_warning(r.get("provenance") or {})]
    out = [(p, machine_load(r.get("provenance") or {})) for p, r in recorded if (p, r) not in kept]
    if not out:
        return kept, ""
    named = "; ".join(f"`{p.name}` (load {', '.join(f'{x:.1f}' for x in load)} with {cores} CPU cores)"
                      for p, (load, cores) in out)
    its, was = ("Its machine", "it ran") if len(out) == 1 else ("Their machines", "they ran")
    return kept, (f"Left out of the figure and the table: {named}. {its} had more runnable work than "
                  f"cores while {was}, so the times measure that competition as much as the models.")


def speedup_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Robust-protocol rows -> variant, batch, median, IQR, runs, speed-up with its 95% bootstrap interval."""
    import pandas as pd

    df = pd.DataFrame(rows)
    return pd.DataFrame({
        "variant": df["variant"], "batch": df["batch_size"], "median s": df["median_s"], "IQR s": df["iqr_s"],
        "runs": df["runs"], "speed-up ×": df["speedup"], "95% CI low": df.get("speedup_low"),
        "95% CI high": df.get("speedup_high"), "tokens": df["tokens_mean"], "ideal ×": df["ideal_speedup"]})


def recorded_timings(results: Path | str, protocol: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every timing record directly under ``results`` (``python -m tomato time --out``)
    whose config names ``protocol`` ("paper" or "robust")."""
    return [(p, r) for p, r in runs.records("timing", results) if r["config"]["protocol"] == protocol]


def merge_share_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """The merge step's share of a forward: the authors' reports, then each of our paper-protocol
    runs (``runs``: name -> rows) for the variants that merge."""
    import pandas as pd

    out = [{"source": f"paper: {r['report']}", "merge ms": r["merge_ms"], "forward s": r["median_s"],
            "merge % of forward": 100 * r["merge_share"]} for r in paper.report_rows()]
    for name, rows in runs.items():
        for s in speed.paper_summary(rows):
            if s["merge_ms"] > 0:
                out.append({"source": f"ours ({name}): {s['variant']}", "merge ms": s["merge_ms"],
                            "forward s": s["median_s"], "merge % of forward": 100 * s["merge_share"]})
    return pd.DataFrame(out)


def plot_forwards(runs: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str = "") -> Figure:
    """Per-forward times, one horizontal strip per run and variant (labels read left to
    right): the authors' five reports (seconds on their Nano CPU), our paper-protocol runs
    (seconds, log scale), and all of them as % from their own run's mean, which puts the
    spreads on one scale. ``runs``: name -> paper-protocol rows."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter, NullFormatter

    theirs = [(f"paper: {r.name}", list(r.forwards)) for r in paper.REPORTS]
    ours = [(f"{name}: {spec}", [float(x["seconds"]) for x in rows if x["variant"] == spec])
            for name, rows in runs.items() for spec in dict.fromkeys(x["variant"] for x in rows)]
    height = 0.32 * (len(theirs) + len(ours)) + 1.6
    fig, axes = plt.subplots(1, 3, figsize=(13, height), gridspec_kw={"width_ratios": [4, 4, 5]})
    rng = np.random.default_rng(0)  # vertical jitter only

    def strips(ax: Any, items: Sequence[tuple[str, Sequence[float]]], colour: Any, labels: bool = True) -> None:
        for k, (_, values) in enumerate(items):
            v = np.asarray(values, dtype=float)
            ax.boxplot([v], positions=[k], widths=0.5, showfliers=False, vert=False)
            ax.plot(v, k + rng.uniform(-0.15, 0.15, v.size), "o", ms=3, color=colour(k), alpha=0.8)
        ax.set_yticks(range(len(items)), [label for label, _ in items] if labels else [""] * len(items),
                      fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)

    strips(axes[0], theirs, lambda k: "tab:red")
    axes[0].set(xlabel="seconds per forward", title="the paper's reports (Nano CPU)")
    strips(axes[1], ours, lambda k: "tab:blue")
    seconds = [x for _, v in ours for x in v]
    log = bool(seconds) and max(seconds) > 10 * min(seconds)  # runs on machines a decade apart
    if log:
        axes[1].set_xscale("log")
        # Plain numbers at the decades only: labelled minor ticks ran into each other.
        axes[1].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set(xlabel="seconds per forward" + (" (log)" if log else ""), title="ours, paper protocol")
    spread = [(label, 100 * (np.asarray(v, dtype=float) / np.mean(v) - 1)) for label, v in (*theirs, *ours)]
    strips(axes[2], spread, lambda k: "tab:red" if k < len(theirs) else "tab:blue", labels=False)
    axes[2].axvline(0, color="grey", lw=0.8)
    axes[2].set(xlabel="% from the run's mean", title="spread within each run (rows as at left)")
    for ax in axes:
        ax.title.set_fontsize(9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- when ToMato pays off
def payoff_table(results: Path | str = "data/results") -> pd.DataFrame:
    """The newest ``payoff`` record of each model under ``results`` (``python -m tomato bench
    --payoff``) as one row per model, batch and sim: ``model`` (short, with "random-init" where it is), the
    cut, ToMato's and the oracle's speed-up (unpatched / variant) and their intervals."""
    import pandas as pd

    from .pictures import model_title

    newest: dict[str, tuple[str, str, list]] = {}  # one record per model: its newest
    for path, rec in runs.records("payoff", results):
        prov = rec["provenance"]
        who = model_title(str(prov.get("model")), bool(prov.get("pretrained", True)))
        date = str(prov.get("date_utc", ""))
        if who not in newest or date > newest[who][0]:
            newest[who] = (date, path.name, rec["rows"])
    return pd.DataFrame([{"model": who, "record": name, **r} for who, (_, name, rows) in newest.items()
                         for r in rows])


def payoff_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Per model and batch: where ToMato becomes faster (its interval above 1) and where
    the oracle does, as the bracket of measured cuts around the crossing ("at a cut between
    12.8% and 20.1%": not faster at the first, faster at the second), the largest cut
    measured, and at how many cuts the oracle's interval lies above (N / k)^2 (N = 196
    patch tokens, k kept: more than dropping tokens can give)."""
    import pandas as pd

    def crossing(g: pd.DataFrame, low: str) -> str:
        faster = g.loc[g[low] > 1, "cut_pct"]
        if faster.empty:
            return f"at no cut measured (up to {g['cut_pct'].max():.1f}%)"
        below = g.loc[g["cut_pct"] < faster.min(), "cut_pct"]
        if below.empty:
            return f"at a cut of {faster.min():.1f}% or less"
        return f"at a cut between {below.max():.1f}% and {faster.min():.1f}%"

    out = []
    for (model, batch), g in df.groupby(["model", "batch"], sort=False):
        # Keeping k of N patch tokens cuts a forward's cost by at most (N / k)^2 (no part of
        # it grows faster than the square of its tokens); an oracle interval wholly above
        # that measures the machine on these photos, not the tokens it dropped.
        over = int((g["oracle_low"] > (paper.NUM_PATCHES / g["tokens_padded"]) ** 2).sum())
        out.append({"model": model, "batch": int(batch), "ToMato becomes faster": crossing(g, "speedup_low"),
                    "the oracle becomes faster": crossing(g, "oracle_low"),
                    "largest cut measured": f"{g['cut_pct'].max():.1f}%",
                    "oracle above (N/k)²": f"{over} of {len(g)} cuts" if over else "no cut"})
    return pd.DataFrame(out)


def plot_payoff(df: pd.DataFrame, title: str = "") -> Figure:
    """Speed-up against token cut, one panel per model: ToMato (solid, 95% intervals) and
    the keep-first-k oracle at the same padded length (dashed: the ceiling), one colour
    per batch size; above the grey line is faster than the unpatched model."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, model in zip(axes[0], models):
        part = df[df["model"] == model]
        for k, (batch, g) in enumerate(part.groupby("batch")):
            g = g.sort_values("cut_pct")
            ax.errorbar(g["cut_pct"], g["speedup"], yerr=[g["speedup"] - g["speedup_low"],
                                                          g["speedup_high"] - g["speedup"]],
                        fmt="-o", ms=4, capsize=2, color=colours(k), label=f"ToMato, batch {batch}")
            ax.plot(g["cut_pct"], g["oracle_speedup"], "--", color=colours(k), alpha=0.7,
                    label=f"oracle, batch {batch}")
        ax.axhline(1.0, color="grey", lw=0.9)
        ax.set(title=model, xlabel="patch tokens cut after block 0 (%, mean per photo)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("speed-up (unpatched time / variant time)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- a live latency chart
_COLORS = {"deit": "black", "tome": "tab:blue", "tomato": "tab:red", "parallel": "tab:purple",
           "keep": "tab:green", "tokens": "tab:olive"}


def _family(spec: str) -> str:
    """Plot series of a variant (:attr:`tomato.harness.variants.Variant.family`)."""
    try:
        return variants.parse(spec).family
    except ValueError:
        return "other"


def plot_latency(rows: pd.DataFrame, ax: Axes | None = None, *, title: str = "Latency, batch 1",
                 pretrained: bool | None = None) -> Axes:
    """Bars of the median latency per variant with IQR error bars (``q1_s``/``q3_s``, or
    ``iqr_s`` split evenly around the median), and the paper-protocol mean as dots."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    df = rows.reset_index(drop=True)
    med = df["median_s"].astype(float).to_numpy()
    if {"q1_s", "q3_s"} <= set(df):
        lo = med - df["q1_s"].astype(float).to_numpy()
        hi = df["q3_s"].astype(float).to_numpy() - med
    else:
        half = df["iqr_s"].astype(float).to_numpy() / 2
        lo = hi = half
    x = np.arange(len(df))
    colors = [_COLORS.get(_family(s), "grey") for s in df["variant"]]
    ax.bar(x, med, yerr=[lo, hi], color=colors, alpha=0.75, capsize=4, label="median (IQR bars)")
    if "paper_mean_s" in df and df["paper_mean_s"].notna().any():
        ax.plot(x, df["paper_mean_s"].astype(float), "o", color="orange",
                label="paper protocol: mean of 10, no warm-up")
    ax.set_xticks(x, [variants.label(s) for s in df["variant"]], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("seconds per image")
    ax.legend(fontsize=8)
    # On random-init weights ToMato's token counts, and so its times, are an untrained network's.
    note = "\n(random-init weights: an untrained network's token counts)" if pretrained is False else ""
    ax.set_title(title + note, fontsize=9)
    return ax
