"""Tables for the book: provenance records, run overviews, short-header views of result
rows, and the pandas Styler every table is shown with.

:func:`provenance_table` turns a provenance record (model, weights, data, machine,
commit, date) into a two-column table; :func:`runs_overview` gives one line per recorded
run; :func:`sweep_view` renames result columns for a book page;
:func:`styled` formats any of them. pandas is imported inside the functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..harness import variants
from .runs import RecordedRun
from .notes import data_label, source_label, stage, trained_here

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: A Jetson probe that found no board writes a value starting with this.
NOT_JETSON_PREFIX = "absent"


def runs_overview(runs: Sequence[RecordedRun]) -> pd.DataFrame:
    """One line per recorded run: what it holds and where it came from."""
    import pandas as pd

    records = []
    for run in runs:
        prov = run.provenance
        machine = prov.get("machine") or {}
        records.append({
            "run": run.name,
            "status": run.status,
            "variants": ", ".join(variants.order(list(run.variants))),
            "images": prov.get("n_images"),
            "model": prov.get("model"),
            "weights": prov.get("weights_source"),
            "data": prov.get("data"),
            "machine": _machine_text(prov, machine),
            "commit": _commit_text(prov),
            "date (UTC)": prov.get("date_utc"),
        })
    return pd.DataFrame(records, columns=["run", "status", "variants", "images", "model", "weights",
                                          "data", "machine", "commit", "date (UTC)"])


def _machine_text(prov: Mapping[str, Any], machine: Mapping[str, Any]) -> str:
    cpu = prov.get("cpu_model") or machine.get("cpu_model") or "?"
    n = machine.get("cpu_count")
    gpu = prov.get("gpu_name") or machine.get("cuda_device") or "?"
    board = machine.get("board_model")
    text = f"{cpu}" + (f" ({n} cores)" if n else "") + f"; GPU: {gpu}"
    if board and not str(board).startswith(NOT_JETSON_PREFIX):
        text += f"; Jetson: {board}, {machine.get('power_mode', '?')}"
    return text


def machine_short(prov: Mapping[str, Any]) -> str:
    """'AMD EPYC CPU (2 cores)', 'NVIDIA H100 GPU' or 'Jetson <board>' for short reasons."""
    machine = prov.get("machine") or {}
    board = machine.get("board_model")
    if board and not str(board).startswith(NOT_JETSON_PREFIX):
        return f"{board}"
    gpu = prov.get("gpu_name") or machine.get("cuda_device")
    if gpu and not str(gpu).startswith("none") and str(prov.get("device", "cuda")).startswith("cuda"):
        return _with_kind(str(gpu), "GPU")
    cpu = prov.get("cpu_model") or machine.get("cpu_model") or "unknown"
    n = machine.get("cpu_count")
    return _with_kind(str(cpu), "CPU") + (f" ({n} cores)" if n else "")


def _with_kind(name: str, kind: str) -> str:
    """``name`` followed by ``kind`` ("GPU", "CPU") unless the name already ends in it."""
    return name if name.upper().endswith(kind) else f"{name} {kind}"


def is_jetson(prov: Mapping[str, Any]) -> bool:
    board = (prov.get("machine") or {}).get("board_model")
    return bool(board) and not str(board).startswith(NOT_JETSON_PREFIX)


def _commit_text(prov: Mapping[str, Any]) -> str:
    git = prov.get("git") or {}
    commit = str(git.get("commit", "unknown"))
    short = commit[:10] if commit != "unknown" else commit
    if git.get("dirty") is True:
        short += " (dirty)"
    return short


def _trained(prov: Mapping[str, Any]) -> str | None:
    """The record's ``pretrained`` flag in words: trained here, trained elsewhere, or random."""
    if prov.get("pretrained") is None:
        return None
    if not prov["pretrained"]:
        return "no: random-init"
    source = str(prov.get("weights_source", ""))
    then = stage(source, prov.get("weights_sha256"))
    return ("yes, trained here" + (f": {then}" if then else "")) if trained_here(source) else "yes"


def provenance_table(prov: Mapping[str, Any]) -> pd.DataFrame:
    """The key fields of a provenance record (:func:`tomato.harness.provenance.collect`, an
    evaluation's ``provenance.json`` or a timing record's) as a two-column table."""
    import pandas as pd

    machine = prov.get("machine") or {}
    sha = prov.get("weights_sha256")
    fields = [
        ("model", prov.get("model")),
        ("weights source", source_label(str(prov.get("weights_source"))).replace("`", "")
         if prov.get("weights_source") else None),
        ("weights sha256", f"{sha[:12]}…" if isinstance(sha, str) and sha else None),
        ("trained weights", _trained(prov)),
        ("data", data_label(prov["data"]) if prov.get("data") else None),
        ("images", prov.get("n_images")),
        ("variants", ", ".join(prov["variants"]) if isinstance(prov.get("variants"), list) else prov.get("variant")),
        ("batch size", prov.get("batch_size")),
        ("device", prov.get("device")),
        ("platform", machine.get("platform")),
        ("CPU", f"{prov.get('cpu_model') or machine.get('cpu_model')}"
                + (f" ({machine['cpu_count']} cores, torch threads {machine.get('torch_threads')})"
                   if machine.get("cpu_count") else "")),
        ("GPU", prov.get("gpu_name") or machine.get("cuda_device")),
        ("Jetson board", machine.get("board_model")),
        ("Jetson power mode", machine.get("power_mode")),
        ("python", prov.get("python") or machine.get("python")),
        ("torch", prov.get("torch") or machine.get("torch")),
        ("timm", prov.get("timm") or machine.get("timm")),
        ("commit", _commit_text(prov) if prov.get("git") else None),
        ("date (UTC)", prov.get("date_utc")),
        ("host", prov.get("hostname")),
    ]
    return pd.DataFrame([(k, v) for k, v in fields if v not in (None, "", "None")], columns=["field", "value"])


#: Words up to this long are never broken; a longer one (a run name, a path) breaks where
#: it must rather than run into the next cell.
WHOLE_WORD = 24


def _min_em(values: Any, header: str) -> float:
    """Width in em that keeps a column's longest word (at most :data:`WHOLE_WORD`
    characters, about 0.6 em each) whole, with the cell's padding."""
    words = " ".join([str(header), *map(str, values)]).split()
    return min(max((len(w) for w in words), default=1), WHOLE_WORD) * 0.6 + 1.2


def styled(df: pd.DataFrame, caption: str = "", *, digits: int = 2, formats: Mapping[str, str] | None = None,
           hide_index: bool = True, widths: Mapping[str, str] | None = None) -> Any:
    """A pandas Styler for the book: ``digits`` decimals for floats (``formats`` per
    column overrides, e.g. ``{"median_s": "{:.4f}"}``), NaN shown as "–", wrapped text,
    an optional caption, no index. ``widths`` (column -> CSS width, e.g. "20%") fixes
    the layout to the page width, for tables with long text."""
    import numpy as np

    fmt: dict[str, Any] = {}
    for col in df.columns:
        if col in (formats or {}):
            fmt[col] = formats[col]
        elif df[col].dtype.kind == "f":
            fmt[col] = f"{{:.{digits}f}}"
    sty = df.style.format(fmt, na_rep="–")
    sty = sty.format(lambda v: "–" if v is None or (isinstance(v, float) and np.isnan(v)) else v,
                     subset=[c for c in df.columns if c not in fmt])
    if hide_index:
        sty = sty.hide(axis="index")
    if caption:
        sty = sty.set_caption(caption)
    styles = [
        {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: bold;"},
        # Text wraps between words, never inside one ("paralle l") unless the word alone is
        # wider than its column; a number never breaks, and a table too wide for its window scrolls.
        {"selector": "td", "props": "white-space: normal; vertical-align: top; overflow-wrap: break-word; "
                                    "word-break: normal;"},
        {"selector": "th", "props": "vertical-align: bottom;"},
        {"selector": "", "props": "font-size: 0.9em;"},
    ]
    for k, col in enumerate(df.columns, 1):
        if df[col].dtype.kind in "iuf":
            styles.append({"selector": f"td:nth-child({k})", "props": "white-space: nowrap;"})
    if widths:
        # A fixed layout squeezes columns to the window; each column's minimum keeps its
        # longest word whole, and so the table's, so a narrow window scrolls.
        min_em = {col: _min_em(df[col], col) for col in df.columns}
        styles.append({"selector": "", "props": "table-layout: fixed; width: 100%; "
                                                f"min-width: {sum(min_em.values()):.0f}em;"})
        for k, col in enumerate(df.columns, 1):
            if col in widths:
                styles.append({"selector": f"th:nth-child({k}), td:nth-child({k})",
                               "props": f"width: max({widths[col]}, {min_em[col]:.1f}em);"})
    return sty.set_table_styles(styles, overwrite=False)


def sweep_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Sweep rows (plus agreement and ``gflops_eval`` when present) with short headers:
    variant, top-1 %, same top-1 % (agreement with the baseline), top-5 kept % (top-5
    overlap), tokens "mean (min–max)", median s, speed-up ×, timed tokens (the mean tokens
    of the photos the speed-up was timed on), GFLOPs, ideal × (both over every image)."""
    import pandas as pd

    def num(col: str) -> Any:
        return pd.to_numeric(rows[col], errors="coerce").to_numpy() if col in rows else float("nan")

    g, ideal = ("gflops_eval", "ideal_speedup_eval") if "gflops_eval" in rows else ("gflops", "ideal_speedup")
    tokens = [f"{m:.1f} ({lo:.0f}–{hi:.0f})" if m == m and lo == lo else "–"
              for m, lo, hi in zip(num("tokens_mean"), num("tokens_min"), num("tokens_max"))]
    return pd.DataFrame({
        "variant": [variants.label(s) for s in rows["variant"]],
        "top-1 %": num("top1"), "same top-1 %": num("top1_agreement"), "top-5 kept %": num("top5_overlap"),
        "tokens (min–max)": tokens, "median s": num("median_s"), "speed-up ×": num("speedup"),
        # The speed-up comes from the few timed photos, whose token counts can differ from
        # the mean over every image that GFLOPs and ideal × are computed from.
        "timed tokens": num("tokens_timed"), "GFLOPs": num(g), "ideal ×": num(ideal),
    })


def paper_setup() -> pd.DataFrame:
    """The paper's experimental setting (:data:`tomato.book.paper.SETUP`): field, value."""
    import pandas as pd

    from .paper import SETUP

    return pd.DataFrame(list(SETUP.items()), columns=["field", "value"])
