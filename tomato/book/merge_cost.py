"""The merge step's cost from the benchmark records (``python -m tomato bench --out``).

One reader serves the book: :func:`bench_records` lists a folder's ``bench_*.json`` records
with their provenance, :func:`merge_table` makes their merge-step rows one tidy table, and
the page's table, figure and sentences (:func:`table_view`, :func:`plot_shares`,
:func:`conclusions`, :func:`run_sentence`) are written from it.
Below: the launch-bound reading of the same records and the static-shape records.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import runs
from .notes import source_label
from .tables import machine_short

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "BenchRecord",
    "read_record",
    "bench_records",
    "records_table",
    "merge_table",
    "table_view",
    "plot_shares",
    "conclusions",
    "run_sentence",
    "pct",
    "METHODS",
    "static_records",
    "launch_table",
    "launch_sentence",
    "static_table",
    "static_view",
    "static_sentences",
]

#: The merge-step methods in the order the page shows them (the bench's row names).
METHODS = ("parallel", "faithful", "reference-style loop")
_COLORS = {"parallel": "tab:blue", "faithful": "tab:orange", "reference-style loop": "tab:red"}
_MERGE, _FORWARD = "merge step: ", "forward: unpatched"


@dataclass(frozen=True)
class BenchRecord:
    """One benchmark record: its file, its rows (dicts as :class:`tomato.harness.bench.Row`
    writes them) and its provenance (empty when the record has none)."""

    path: Path
    rows: list[dict[str, Any]]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        """"cuda" or "cpu" (from the provenance, else from the rows)."""
        dev = self.provenance.get("device") or next((r.get("device") for r in self.rows if r.get("device")), "?")
        return str(dev).split(":")[0]

    @property
    def threads(self) -> int | None:
        """torch CPU threads of the run (what the provenance's machine summary saw)."""
        n = (self.provenance.get("machine") or {}).get("torch_threads")
        return int(n) if isinstance(n, int) else None

    @property
    def label(self) -> str:
        """The machine in words: 'NVIDIA H100 80GB HBM3 GPU', 'Intel ... CPU (16 cores), 2 threads'."""
        if not self.provenance:
            return self.device
        where = machine_short({"device": self.device, **self.provenance})
        return where + (f", {self.threads} threads" if self.device == "cpu" and self.threads else "")


def read_record(path: Path | str, of: str = "bench") -> BenchRecord | None:
    """The record at ``path``, or None when it is not a benchmark of kind ``of`` (``"bench"``,
    the merge step; ``"static"``, the static-shape records of :func:`static_records`)."""
    data = runs.record(of, path)
    return None if data is None else _bench(Path(path), data)


def _bench(path: Path, data: dict[str, Any]) -> BenchRecord:
    rows = [r for r in data["rows"] if isinstance(r, dict) and isinstance(r.get("name"), str)]
    return BenchRecord(path, rows, data["provenance"])


def bench_records(results: Path | str, of: str = "bench") -> list[BenchRecord]:
    """Every benchmark of kind ``of`` directly under ``results`` (``bench_*.json`` for the
    merge step, ``bench-static_*.json`` for ``"static"``), by file name."""
    return [_bench(p, data) for p, data in runs.records(of, results)]


def records_table(records: Iterable[BenchRecord]) -> pd.DataFrame:
    """One line per record: the machine and settings its provenance names.

    Columns: record (file name), machine (:attr:`BenchRecord.label`), weights, batch sizes
    (those of its rows, comma-separated), runs (timed rounds), warm-up (untimed rounds),
    torch (version), date (UTC) (to the minute), note (the provenance's note, else empty).
    Missing provenance entries read "–" (runs and warm-up: None).
    """
    import pandas as pd

    return pd.DataFrame([{
        "record": r.path.name, "machine": r.label, "weights": _shown(r.provenance.get("weights")),
        "batch sizes": ", ".join(str(b) for b in sorted({int(x.get("batch", 1)) for x in r.rows})),
        "runs": r.provenance.get("runs"), "warm-up": r.provenance.get("warmup"),
        "torch": r.provenance.get("torch", "–"), "date (UTC)": str(r.provenance.get("date_utc", "–"))[:16],
        "note": r.provenance.get("note", "")} for r in records])


def _number(value: Any) -> float:  # a JSON number, else NaN
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def merge_table(records: Iterable[BenchRecord]) -> pd.DataFrame:
    """The merge-step rows of ``records`` as one tidy table.

    Columns: record (file name), device, machine, threads, weights, runs (timed rounds
    behind each median, from the provenance; <NA> when it names none), batch, method
    (parallel / faithful / reference-style loop), mode ("sim=1e-7", "tokens=138" ...),
    median_ms, iqr_ms, share (the row's ``ratio``: median over the unpatched forward's
    median of the same interleaved run and batch), forward_ms (that forward's median),
    tokens, ops, syncs. Rows are ordered CUDA first, then CPU by threads, then batch,
    method, mode.
    """
    import pandas as pd

    out = []
    for rec in records:
        forward = {int(r.get("batch", 1)): _number(r.get("median_ms")) for r in rec.rows if r["name"] == _FORWARD}
        runs = rec.provenance.get("runs")
        runs = runs if isinstance(runs, int) and not isinstance(runs, bool) else None
        for r in rec.rows:
            if not r["name"].startswith(_MERGE):
                continue
            method, _, mode = r["name"][len(_MERGE):].partition(", ")
            batch = int(r.get("batch", 1))
            out.append({"record": rec.path.name, "device": rec.device, "machine": rec.label, "threads": rec.threads,
                        "weights": _shown(rec.provenance.get("weights")), "runs": runs, "batch": batch,
                        "method": method,
                        "mode": mode, "median_ms": _number(r.get("median_ms")), "iqr_ms": _number(r.get("iqr_ms")),
                        "share": _number(r.get("ratio")), "forward_ms": forward.get(batch, math.nan),
                        "tokens": _number(r.get("tokens")), "ops": r.get("ops"), "syncs": r.get("syncs")})
    columns = ["record", "device", "machine", "threads", "weights", "runs", "batch", "method", "mode", "median_ms",
               "iqr_ms", "share", "forward_ms", "tokens", "ops", "syncs"]
    df = pd.DataFrame(out, columns=columns)
    for col in ("threads", "runs", "ops", "syncs"):
        df[col] = df[col].astype("Int64")
    order = {m: k for k, m in enumerate(METHODS)}
    key = df.assign(_cpu=df["device"] != "cuda", _t=df["threads"].fillna(0), _m=df["method"].map(order).fillna(9))
    return df.loc[key.sort_values(["_cpu", "_t", "record", "batch", "_m", "mode"], kind="stable").index].reset_index(
        drop=True)


def table_view(df: pd.DataFrame) -> pd.DataFrame:
    """``merge_table`` for the page, missing values as None.

    Columns: machine, batch, method, mode, median ms and IQR ms (of the merge step alone),
    % of forward (its share of the unpatched forward of the same run and batch, in %),
    forward ms (that forward's median), tokens (patch tokens the step kept, mean over the
    batch), ops (aten ops per call), syncs (host syncs per call), record (file name).
    """
    view = df.assign(share=100 * df["share"])
    view = view[["machine", "batch", "method", "mode", "median_ms", "iqr_ms", "share", "forward_ms", "tokens", "ops",
                 "syncs", "record"]]
    view = view.astype({"ops": object, "syncs": object}).where(view.notna(), None)
    return view.rename(columns={"median_ms": "median ms", "iqr_ms": "IQR ms", "share": "% of forward",
                                "forward_ms": "forward ms"})


def _two_digit_decimals(x: float) -> int:
    """Decimals that show ``x`` (non-zero) to two significant digits: 1 for 4.8, 3 for 0.084."""
    return max(0, 1 - math.floor(math.log10(abs(x))))


def _sig2(x: float) -> str:
    """``x`` to two significant digits, trailing zeros kept: 0.60, 2.0, 12, 120."""
    x = float(f"{x:.2g}")
    if x == 0:
        return "0.0"
    return f"{x:.{_two_digit_decimals(x)}f}"


def _rounds(runs: Any, how: str = "medians of") -> str:
    """', medians of 12 timed rounds' when the record names its rounds (``runs`` of
    ``merge_table``), else ''."""
    return f", {how} {_n(int(runs), 'timed round')}" if isinstance(runs, numbers.Integral) else ""


def pct(share: float) -> str:
    """A share as a percentage to two significant digits ("42%", "1.7%", "473%"): single
    timed rounds spread by tens of percent, so a third digit would claim too much."""
    v = 100 * share
    if not v > 0:
        return f"{v:g}%"
    return f"{v:.{_two_digit_decimals(v)}f}%"  # at 100% and over, whole percents


def plot_shares(df: pd.DataFrame, *, title: str = "") -> Figure:
    """The merge step as a share of one unpatched forward against the batch size: one
    panel per record (its machine in the panel title), one colour per method, solid for
    the first mode and dashed for the others; log axes when the shares span > 20x. The
    title names the records' weights (and says when they are random-init)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = list(dict.fromkeys(df["record"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), sharey=True, squeeze=False)
    modes = list(dict.fromkeys(df["mode"]))
    shares = df["share"].dropna()
    log = not shares.empty and shares.min() > 0 and shares.max() / shares.min() > 20
    for ax, record in zip(axes[0], panels):
        part = df[df["record"] == record]
        for (method, mode), g in part.groupby(["method", "mode"], sort=False):
            g = g.sort_values("batch")
            ax.plot(g["batch"], 100 * g["share"], "-o" if mode == modes[0] else "--s", ms=5,
                    color=_COLORS.get(method, "grey"), label=f"{method}, {mode}")
        ax.axhline(100, color="grey", lw=0.8, ls=":")
        batches = sorted(part["batch"].unique())
        ax.set_xscale("log", base=2)
        ax.set(yscale="log" if log else "linear", xlabel="batch size")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_title(f"{part['machine'].iloc[0]}\n{record}", fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("merge step, % of one unpatched forward")
    legend = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize=8, frameon=False)
    weights = ", ".join(dict.fromkeys(df["weights"]))
    note = ": an untrained network's merges" if "random-init" in weights else ""
    fig.suptitle(f"{title or 'Merge step as a share of one unpatched forward'} (medians; weights {weights}{note})")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def _counts(g: pd.DataFrame) -> str:
    """'102 ops, 1 host sync' from the rows of one method and mode (ranges where they differ)."""
    def span(col: str, unit: str) -> str:
        v = sorted(int(x) for x in g[col].dropna().unique())
        return (f"{v[0]}" if len(v) == 1 else f"{v[0]}–{v[-1]}") + f" {unit}" + ("" if v == [1] else "s")
    return f"{span('ops', 'op')}, {span('syncs', 'host sync')}"


def conclusions(df: pd.DataFrame) -> str:
    """Markdown bullets written from ``merge_table``: per machine and mode, each method's
    share of a forward at each batch (and faithful over parallel, to two significant
    digits; a batch with no share recorded is left out); whether op and sync counts grow
    with the batch; how much single timed rounds vary (the largest IQR over median, which
    is the spread of one round, not the uncertainty of a median)."""
    lines = []
    for record, part in df.groupby("record", sort=False):
        for mode, m in part.groupby("mode", sort=False):
            cells = []
            for batch, b in m.groupby("batch"):
                s = {k: v for k, v in zip(b["method"], b["share"]) if not math.isnan(v)}
                text = ", ".join(f"{k} {pct(s[k])}" for k in METHODS if k in s)
                if not text:
                    continue
                if {"parallel", "faithful"} <= set(s) and s["parallel"] > 0:
                    text += f" (faithful = {_sig2(s['faithful'] / s['parallel'])}× parallel)"
                cells.append(f"batch {batch}: {text}")
            if cells:
                lines.append(f"- **{part['machine'].iloc[0]}**, {mode} (`{record}`{_rounds(m['runs'].iloc[0])}): the "
                             "merge step costs, as a share of one unpatched forward, " + "; ".join(cells) + ".")
    once = []
    for (method, mode), g in df.dropna(subset=["ops", "syncs"]).groupby(["method", "mode"], sort=False):
        batches = sorted(g["batch"].unique())
        if len(batches) == 1:
            once.append(f"{method}, {mode} at batch {batches[0]}: {_counts(g)}")
            continue
        moved = {r: x.sort_values("batch") for r, x in g.groupby("record") if x[["ops", "syncs"]].nunique().max() > 1}
        if not moved:
            lines.append(f"- **{method}, {mode}**: {_counts(g)} at every batch size recorded "
                         f"({', '.join(str(b) for b in batches)}): the count does not grow with the batch.")
            continue
        record, x = max(moved.items(), key=lambda kv: kv[1]["batch"].max())
        lo, hi = x.iloc[0], x.iloc[-1]
        how = "grows" if hi["ops"] >= lo["ops"] and hi["syncs"] >= lo["syncs"] else "changes"
        lines.append(f"- **{method}, {mode}**: the count {how} with the batch, from {lo['ops']} ops and "
                     f"{lo['syncs']} host syncs at batch {lo['batch']} to {hi['ops']} and {hi['syncs']} at batch "
                     f"{hi['batch']} (`{record}`).")
    if once:
        lines.append("- **Counted at one batch size only:** " + "; ".join(once) + ".")
    spread = (df["iqr_ms"] / df["median_ms"]).dropna()
    if not spread.empty:
        worst = df.loc[spread.idxmax()]
        lines.append(f"- **Spread of single rounds:** single timed rounds vary; the interquartile range of a "
                     f"merge-step time reaches {100 * spread.max():.0f}% of its median ({worst['method']}, "
                     f"{worst['mode']}, batch {worst['batch']}, `{worst['record']}`{_rounds(worst['runs'], 'over')}). "
                     "That is how much one round varies, not how uncertain the median is.")
    return "\n".join(lines)


def _n(k: Any, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def run_sentence(record: BenchRecord) -> str:
    """One sentence about a benchmark run, written from its record's provenance."""
    p = record.provenance
    load = (p.get("machine") or {}).get("load_average_1_5_15_min")
    sizes = p.get("batch_sizes") or sorted({int(r.get("batch", 1)) for r in record.rows})
    return (f"Benchmark of `{p.get('model', '?')}` with weights `{p.get('weights', '?')}` on {record.label} "
            f"(device `{p.get('device', record.device)}`, {_n(record.threads or '?', 'torch CPU thread')}): "
            f"batch size{'s' if len(sizes) > 1 else ''} {', '.join(str(b) for b in sizes)}; "
            f"{_n(p.get('warmup', '?'), 'untimed warm-up round')} then "
            f"{_n(p.get('runs', '?'), 'timed round')}, every measurement interleaved round-robin in one run; "
            f"medians, each merge step as a share of the unpatched forward of the same run; recorded in "
            f"`{record.path.name}`" + (f" (load average over 1/5/15 min: {', '.join(f'{x:.1f}' for x in load)})"
                                       if isinstance(load, list) else "") + ".")


# launch-bound devices and the static mode --------------------------------------------------------
# Launch-bound devices and the static mode, from the benchmark records.
#
# Two readings for the merge-cost page: :func:`launch_table` takes the whole-forward rows of
# the CUDA merge-step records (``bench_*.json``), whose time per aten op says whether a
# forward waits on launches rather than on FLOPs; :func:`static_table` takes the
# static-shape records (``bench-static_*.json``, ``python -m tomato bench --static``), where
# every model runs eager, compiled, under ONNX Runtime or CUDA-graphed. The sentences under
# both are written from the rows (:func:`launch_sentence`, :func:`static_sentences`).

_FORWARD_PREFIX = "forward: "
_UNPATCHED = "unpatched"


def static_records(results: Path | str) -> list[BenchRecord]:
    """Every static-shape benchmark ``bench-static_*.json`` directly under ``results``."""
    return bench_records(results, "static")


def launch_table(records: Iterable[BenchRecord], batch: int = 1, device: str = "cuda") -> pd.DataFrame:
    """The whole-forward rows of the ``device`` records at ``batch``.

    Columns: record, machine, forward (the bench's name without ``forward:``), median ms,
    x unpatched (ratio to the unpatched forward of the same run), x oracle (a ToMato
    forward over the oracle keeping as many tokens, same run; NaN for the others), ops,
    syncs, us per op (median over ops: on a launch-bound device, nearly the same for
    every forward).
    """
    import pandas as pd

    out = []
    for rec in records:
        if rec.device != device:
            continue
        for r in rec.rows:
            if not r["name"].startswith(_FORWARD_PREFIX) or int(r.get("batch", 1)) != batch or not r.get("ops"):
                continue
            ms = float(r["median_ms"])
            out.append({"record": rec.path.name, "machine": rec.label, "forward": r["name"][len(_FORWARD_PREFIX):],
                        "median ms": ms, "x unpatched": float(r["ratio"]), "x oracle": _number(r.get("vs_oracle")),
                        "ops": int(r["ops"]), "syncs": int(r.get("syncs") or 0), "us per op": 1e3 * ms / int(r["ops"])})
    return pd.DataFrame(out, columns=["record", "machine", "forward", "median ms", "x unpatched", "x oracle", "ops",
                                      "syncs", "us per op"])


def launch_sentence(df: pd.DataFrame) -> str:
    """Why the merges are slower than DeiT on a GPU at batch 1, from :func:`launch_table`."""
    if df.empty:
        return ("No CUDA merge-step record holds whole forwards at batch 1: "
                "`python -m tomato bench --device cuda --batch-sizes 1 8 64 --out ...` adds one.")
    parts = []
    for record, g in df.groupby("record", sort=False):
        rows = {r["forward"]: r for r in g.to_dict("records")}
        base = rows.get(_UNPATCHED)
        if base is None:
            continue
        lo, hi = g["us per op"].min(), g["us per op"].max()
        examples = "; ".join(
            f"{f}: {r['ops']} ops and {_syncs(r['syncs'])} in {r['median ms']:.2f} ms "
            f"({r['x unpatched']:.2f}× DeiT-B's time)"
            for f, r in rows.items() if f.startswith("tome") or (f.startswith("tomato") and "parallel" in f))
        parts.append(
            f"On the {g['machine'].iloc[0]} at batch 1 (`{record}`), every forward costs {lo:.0f}-{hi:.0f} µs per "
            f"aten op it dispatches, whatever its FLOPs: DeiT-B's {base['ops']} ops take {base['median ms']:.2f} ms; "
            f"{examples}. The device waits on kernel launches, not on arithmetic, so an op on 138 tokens costs what "
            "it costs on 196, and ToMe's matching in every block and ToMato's merge step cost their op counts. "
            "Static mode removes the host sync and fixes the shapes, which is what a CUDA graph needs to replay "
            "all the kernels without launching them one by one; that replay is the measurement that waits for a GPU.")
    return " ".join(parts)


def _syncs(n: int) -> str:
    return f"{n} host sync" + ("" if n == 1 else "s")


def static_table(records: Iterable[BenchRecord]) -> pd.DataFrame:
    """The static-shape rows of ``records``.

    Columns: record, machine, weights, batch, treatment (eager / compiled / onnxruntime /
    cuda-graph), model (unpatched / oracle keeps first k / tomato tokens=k, static),
    median ms, x unpatched (against the unpatched model under the same treatment, same
    run), tokens (patch tokens: the real groups for ToMato), ops, syncs (eager only).
    """
    import pandas as pd

    out = []
    for rec in records:
        for r in rec.rows:
            treatment, _, model = r["name"].partition(": ")
            out.append({"record": rec.path.name, "machine": rec.label,
                        "weights": str(rec.provenance.get("weights", "?")), "batch": int(r.get("batch", 1)),
                        "treatment": treatment, "model": model, "median ms": float(r["median_ms"]),
                        "x unpatched": float(r["ratio"]), "tokens": r.get("tokens"),
                        "ops": r.get("ops"), "syncs": r.get("syncs")})
    df = pd.DataFrame(out, columns=["record", "machine", "weights", "batch", "treatment", "model", "median ms",
                                    "x unpatched", "tokens", "ops", "syncs"])
    for col in ("ops", "syncs"):
        df[col] = df[col].astype("Int64")
    return df


def _role(model: str) -> str:
    """A static record's model label -> "unpatched", "oracle" or "tomato"."""
    return model.split(" ", 1)[0]


def _pairs(df: pd.DataFrame) -> list[dict]:
    """One dict per record, batch and treatment of :func:`static_table` that holds all
    three models: the group's keys, its weights and machine, and its unpatched, oracle
    and tomato rows (as dicts)."""
    out = []
    for (record, batch, treatment), g in df.groupby(["record", "batch", "treatment"], sort=False):
        by = {_role(m): r for m, r in zip(g["model"], g.to_dict("records"))}
        if {_UNPATCHED, "oracle", "tomato"} <= set(by):
            out.append({"record": record, "batch": batch, "treatment": treatment,
                        "weights": str(g["weights"].iloc[0]), "machine": g["machine"].iloc[0],
                        "base": by[_UNPATCHED], "oracle": by["oracle"], "tomato": by["tomato"],
                        "ratio": by["tomato"]["median ms"] / by["oracle"]["median ms"]})
    return out


def static_view(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`static_table` for the page, one line per record, batch and treatment.

    Columns: weights (random-init DeiT-B or the model trained here), batch, treatment,
    unpatched ms, oracle x and ToMato x (each against the unpatched model under the same
    treatment), ToMato / oracle, ToMato ops and syncs (eager only)."""
    import pandas as pd

    out = [{"weights": _weights_name(p["weights"], short=True), "batch": p["batch"], "treatment": p["treatment"],
            "unpatched ms": p["base"]["median ms"], "oracle x": p["oracle"]["x unpatched"],
            "ToMato x": p["tomato"]["x unpatched"], "ToMato / oracle": p["ratio"],
            "ToMato ops": p["tomato"]["ops"], "syncs": p["tomato"]["syncs"]} for p in _pairs(df)]
    view = pd.DataFrame(out, columns=["weights", "batch", "treatment", "unpatched ms", "oracle x", "ToMato x",
                                      "ToMato / oracle", "ToMato ops", "syncs"])
    view = view.astype({"ToMato ops": "Int64", "syncs": "Int64"})
    return view.astype({"ToMato ops": object, "syncs": object}).where(view.notna(), None)


def _shown(weights: object) -> str:
    """A record's weights as the page prints them (:func:`tomato.book.notes.source_label`:
    the project's names, not the recording machine's paths)."""
    return source_label(str(weights)).replace("`", "") if weights else "–"


def _weights_name(weights: str, short: bool = False) -> str:
    """How the page names a record's weights; ``short`` leaves out the weights' own label."""
    if weights.startswith("random-init"):
        name, label = "random-init DeiT-B", weights
    else:
        name, label = "the model trained here", Path(weights.split(":", 1)[-1]).parent.name
    return name if short else f"{name} (`{label}`)"


def static_sentences(df: pd.DataFrame) -> str:
    """Markdown bullets from :func:`static_table`: per record and treatment, ToMato's time
    against the oracle's at each batch; the eager op and sync counts it adds."""
    if df.empty:
        return ("No static-shape record yet: `python -m tomato bench --static --out "
                "data/results/bench-static_NAME.json` adds one.")
    lines = []
    pairs = _pairs(df)
    for record in dict.fromkeys(p["record"] for p in pairs):
        mine = [p for p in pairs if p["record"] == record]
        cells: dict[str, list[str]] = {}
        for p in sorted(mine, key=lambda p: p["batch"]):
            cells.setdefault(p["treatment"], []).append(
                f"batch {p['batch']}: ×{1 / p['tomato']['x unpatched']:.2f} against the oracle's "
                f"×{1 / p['oracle']['x unpatched']:.2f} (ToMato takes {p['ratio']:.2f} of the oracle's time)")
        order = list(dict.fromkeys(p["treatment"] for p in mine))
        lines.append(f"- **{_weights_name(mine[0]['weights'])}** on {mine[0]['machine']} (`{record}`), static "
                     "ToMato's speed-up (unpatched time / ToMato's, above 1 is faster) under the same treatment: "
                     + ". ".join(f"{t}, " + "; ".join(cells[t]) for t in order) + ".")
        eager = [p for p in mine if p["treatment"] == "eager" and not _missing(p["tomato"]["ops"])]
        if eager:
            ops = sorted({int(p["tomato"]["ops"]) for p in eager})
            b_ops = int(eager[0]["base"]["ops"])
            syncs = sorted({int(p["tomato"]["syncs"]) for p in eager})
            lines.append(f"- Eager, the static forward dispatches {'-'.join(str(o) for o in ops)} aten ops against "
                         f"the unpatched {b_ops} (+{ops[-1] - b_ops}) and "
                         f"{_syncs(syncs[0]) if len(syncs) == 1 else str(syncs) + ' host syncs'} at every batch size "
                         f"recorded ({', '.join(str(p['batch']) for p in eager)}).")
    return "\n".join(lines)


def _missing(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))
