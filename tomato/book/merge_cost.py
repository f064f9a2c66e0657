"""The merge step's cost from the benchmark records (``python -m tomato bench --out``).

One reader serves the book: :func:`bench_records` lists a folder's ``bench_*.json`` records
with their provenance, :func:`merge_table` makes their merge-step rows one tidy table, and
the page's tables and figure (:func:`table_view`, :func:`plot_shares`) are drawn from it.
Below: the launch-bound reading of the same records, the static-shape records, and the
numbers the page's answer glues into its Markdown (:func:`answer_values`): the sentences
live in the notebook, not here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..harness.manifest import MANIFEST
from . import runs
from .tables import machine_short, source_label, trained_here

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
    "pct",
    "METHODS",
    "static_records",
    "launch_table",
    "static_table",
    "static_view",
    "answer_values",
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
    def name(self) -> str:
        """The record as the page names it: its file name, after its model's folder when it
        lies in a recording (``deit-tiny-imagenette/bench_cpu-2threads.json``), so two
        models' records of one file name stay apart."""
        in_recording = (self.path.parent / MANIFEST).is_file()
        return f"{self.path.parent.name}/{self.path.name}" if in_recording else self.path.name

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
        "record": r.name, "machine": r.label, "weights": _shown(r.provenance.get("weights")),
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
            out.append({"record": rec.name, "device": rec.device, "machine": rec.label, "threads": rec.threads,
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


def pct(share: float) -> str:
    """A share as a percentage to two significant digits ("42%", "1.7%", "473%"): single
    timed rounds spread by tens of percent, so a third digit would claim too much."""
    v = 100 * share
    if not v > 0:
        return f"{v:g}%"
    return f"{v:.{_two_digit_decimals(v)}f}%"  # at 100% and over, whole percents


def plot_shares(df: pd.DataFrame, *, title: str = "") -> Figure:
    """The merge step as a share of one unpatched forward against the batch size: one
    panel per record (its machine and weights in the panel title, which says when they are
    random-init), one colour per method, solid for the first mode and dashed for the
    others; log axes when the shares span > 20x."""
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
        weights = part["weights"].iloc[0]
        untrained = " (an untrained network's merges)" if "random-init" in weights else ""
        ax.set_title(f"{part['machine'].iloc[0]}\n{record}\nweights {weights}{untrained}", fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("merge step, % of one unpatched forward")
    legend = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{title or 'Merge step as a share of one unpatched forward'} (medians)")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


# launch-bound devices and the static mode --------------------------------------------------------
# :func:`launch_table` takes the whole-forward rows of the merge-step records, whose time
# per aten op says whether a forward waits on launches rather than on FLOPs;
# :func:`static_table` takes the static-shape records (``bench-static_*.json``), where every
# model runs eager, compiled, under ONNX Runtime or CUDA-graphed.

_FORWARD_PREFIX = "forward: "
_UNPATCHED = "unpatched"


def static_records(results: Path | str) -> list[BenchRecord]:
    """Every static-shape benchmark ``bench-static_*.json`` directly under ``results``."""
    return bench_records(results, "static")


def launch_table(records: Iterable[BenchRecord], batch: int = 1, device: str = "cuda") -> pd.DataFrame:
    """The whole-forward rows of the ``device`` records at ``batch``.

    Columns: record, machine, forward (the bench's name without ``forward:``), median ms,
    speed-up (the unpatched forward's median over this one's, same run: below 1 is slower),
    speed vs oracle (the oracle's median over a ToMato forward's, the oracle keeping as many
    tokens, same run; NaN for the others), ops, syncs, us per op (median over ops: on a launch-bound device, nearly the same for
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
            out.append({"record": rec.name, "machine": rec.label, "forward": r["name"][len(_FORWARD_PREFIX):],
                        "median ms": ms, "speed-up": 1 / float(r["ratio"]),
                        "speed vs oracle": 1 / _number(r.get("vs_oracle")),
                        "ops": int(r["ops"]), "syncs": int(r.get("syncs") or 0), "us per op": 1e3 * ms / int(r["ops"])})
    return pd.DataFrame(out, columns=["record", "machine", "forward", "median ms", "speed-up", "speed vs oracle",
                                      "ops", "syncs", "us per op"])


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
            out.append({"record": rec.name, "machine": rec.label,
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

    Columns: weights (as :func:`tomato.book.tables.source_label` names them), batch, treatment,
    unpatched ms, the oracle's and ToMato's speed-up (the unpatched model's time over theirs,
    under the same treatment), ToMato's speed vs the oracle's (the oracle's time over
    ToMato's), ToMato ops and syncs (eager only). Below 1 is slower."""
    import pandas as pd

    out = [{"weights": _shown(p["weights"]), "batch": p["batch"], "treatment": p["treatment"],
            "unpatched ms": p["base"]["median ms"], "oracle speed-up": 1 / p["oracle"]["x unpatched"],
            "ToMato speed-up": 1 / p["tomato"]["x unpatched"], "ToMato speed vs oracle": 1 / p["ratio"],
            "ToMato ops": p["tomato"]["ops"], "syncs": p["tomato"]["syncs"]} for p in _pairs(df)]
    view = pd.DataFrame(out, columns=["weights", "batch", "treatment", "unpatched ms", "oracle speed-up",
                                      "ToMato speed-up", "ToMato speed vs oracle", "ToMato ops", "syncs"])
    view = view.astype({"ToMato ops": "Int64", "syncs": "Int64"})
    return view.astype({"ToMato ops": object, "syncs": object}).where(view.notna(), None)


def _shown(weights: object) -> str:
    """A record's weights as the page prints them (:func:`tomato.book.tables.source_label`:
    the project's names, not the recording machine's paths)."""
    return source_label(str(weights)).replace("`", "") if weights else "–"


# --------------------------------------------------------------------------- the page's answer
def _count(value: Any) -> bool:
    """Whether ``value`` is a recorded count (not None, NaN or pandas' NA)."""
    import pandas as pd

    return value is not None and not bool(pd.isna(value))


def _book_record(records: Iterable[BenchRecord], model: str, device: str) -> BenchRecord | None:
    """The newest record of ``device`` whose weights are ``data/weights/<model>``."""
    mine = [r for r in records if r.device == device and trained_here(str(r.provenance.get("weights"))) == model]
    return max(mine, key=lambda r: str(r.provenance.get("date_utc", ""))) if mine else None


def answer_values(records: Iterable[BenchRecord], static: Iterable[BenchRecord], model: str,
                  device: str = "cpu") -> dict[str, str]:
    """The numbers the page's answer glues, from ``model``'s newest merge-step and static
    records on ``device`` ("not recorded" where a record or row is missing). Keys:
    ``machine``, ``share_b{1,8}`` (the parallel step at sim=1e-7, % of one unpatched
    forward), ``ops``/``syncs`` (that step's aten ops and host syncs per call),
    ``oracle_b{1,8}`` (ToMato's parallel forward's speed against the oracle's at its own
    token count), ``inf_b{1,8}`` (merging on, nothing merged: speed-up over unpatched),
    ``static_ops`` (aten ops the static forward adds to the unpatched one, eager),
    ``static_syncs``, ``static_eager_b1``/``static_onnx_b1`` (static ToMato's speed against
    the oracle's at batch 1). Every ratio is a speed-up, the other's time over ToMato's
    (below 1: slower), with its 95% interval where the record has one."""
    missing = "not recorded"
    out = dict.fromkeys(["machine", "share_b1", "share_b8", "ops", "syncs", "oracle_b1", "oracle_b8", "inf_b1",
                         "inf_b8", "static_ops", "static_syncs", "static_eager_b1", "static_onnx_b1"], missing)
    rec = _book_record(records, model, device)
    if rec is not None:
        out["machine"] = rec.label
        rows = {(r["name"], int(r.get("batch", 1))): r for r in rec.rows}
        for b in (1, 8):
            step = rows.get(("merge step: parallel, sim=1e-7", b))
            if step is not None:
                out[f"share_b{b}"] = pct(float(step["ratio"]))
                if b == 1 and _count(step.get("ops")) and _count(step.get("syncs")):  # the same at every batch
                    out["ops"], out["syncs"] = str(int(step["ops"])), str(int(step["syncs"]))
            forward = rows.get(("forward: tomato sim=1e-7, parallel", b))
            if forward is not None and forward.get("vs_oracle") is not None:
                out[f"oracle_b{b}"] = _speed(forward, "vs_oracle")
            idle = rows.get(("forward: tomato sim=inf (nothing merges), parallel", b))
            if idle is not None:
                out[f"inf_b{b}"] = _speed(idle, "ratio")
    st = _book_record(static, model, device)
    if st is not None:
        pairs = {(p["treatment"], p["batch"]): p for p in _pairs(static_table([st]))}
        eager, onnx = pairs.get(("eager", 1)), pairs.get(("onnxruntime", 1))
        if eager is not None:
            out["static_eager_b1"] = f"×{1 / eager['ratio']:.3f}"
            tomato, base = eager["tomato"], eager["base"]
            if _count(tomato["ops"]) and _count(base["ops"]) and _count(tomato["syncs"]):
                out["static_ops"] = str(int(tomato["ops"]) - int(base["ops"]))
                out["static_syncs"] = str(int(tomato["syncs"]))
        if onnx is not None:
            out["static_onnx_b1"] = f"×{1 / onnx['ratio']:.3f}"
    return out


def _speed(row: dict[str, Any], key: str) -> str:
    """A bench row's time ratio ``key`` as a speed-up ("×0.912 (95% CI 0.898–0.925)"): its
    inverse, the interval's ends swapped and inverted; no interval where none was recorded."""
    text = f"×{1 / float(row[key]):.3f}"
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if low is None or high is None:
        return text
    return f"{text} (95% CI {1 / float(high):.3f}–{1 / float(low):.3f})"
