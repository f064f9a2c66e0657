"""Launch-bound devices and the static mode, from the benchmark records.

Two readings for the merge-cost page: :func:`launch_table` takes the whole-forward rows of
the CUDA merge-step records (``bench_*.json``), whose time per aten op says whether a
forward waits on launches rather than on FLOPs; :func:`static_table` takes the
static-shape records (``bench-static_*.json``, ``python -m tomato bench --static``), where
every model runs eager, compiled, under ONNX Runtime or CUDA-graphed. The sentences under
both are written from the rows (:func:`launch_sentence`, :func:`static_sentences`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .merge_cost import BenchRecord, bench_records

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["static_records", "launch_table", "launch_sentence", "static_table", "static_view", "static_sentences"]

_FORWARD = "forward: "
_UNPATCHED = "unpatched"


def static_records(results: Path | str) -> list[BenchRecord]:
    """Every static-shape benchmark ``bench-static_*.json`` directly under ``results``."""
    return bench_records(results, "static")


def launch_table(records: Iterable[BenchRecord], batch: int = 1) -> pd.DataFrame:
    """The whole-forward rows of the CUDA records at ``batch``.

    Columns: record, machine, forward (the bench's name without ``forward:``), median ms,
    x unpatched (ratio to the unpatched forward of the same run), ops, syncs, us per op
    (median over ops: on a launch-bound device, nearly the same for every forward).
    """
    import pandas as pd

    out = []
    for rec in records:
        if rec.device != "cuda":
            continue
        for r in rec.rows:
            if not r["name"].startswith(_FORWARD) or int(r.get("batch", 1)) != batch or not r.get("ops"):
                continue
            ms = float(r["median_ms"])
            out.append({"record": rec.path.name, "machine": rec.label, "forward": r["name"][len(_FORWARD):],
                        "median ms": ms, "x unpatched": float(r["ratio"]), "ops": int(r["ops"]),
                        "syncs": int(r.get("syncs") or 0), "us per op": 1e3 * ms / int(r["ops"])})
    return pd.DataFrame(out, columns=["record", "machine", "forward", "median ms", "x unpatched", "ops", "syncs",
                                      "us per op"])


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
            f"{f}: {r['ops']} ops and {_syncs(r['syncs'])} in {r['median ms']:.2f} ms (x{r['x unpatched']:.2f})"
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
                f"batch {p['batch']}: x{p['tomato']['x unpatched']:.2f} against the oracle's "
                f"x{p['oracle']['x unpatched']:.2f} (ToMato / oracle {p['ratio']:.2f})")
        order = list(dict.fromkeys(p["treatment"] for p in mine))
        lines.append(f"- **{_weights_name(mine[0]['weights'])}** on {mine[0]['machine']} (`{record}`), static "
                     "ToMato's time as a share of the unpatched model's under the same treatment: "
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
