"""Tables for the book: provenance records, short machine names, and the pandas Styler
every table is shown with.

:func:`provenance_table` turns a provenance record (model, weights, data, machine,
commit, date) into a two-column table; :func:`machine_short` names a record's machine in
a few words; :func:`styled` formats any table. pandas is imported inside the functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .notes import data_label, source_label, stage, trained_here

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: A Jetson probe that found no board writes a value starting with this.
NOT_JETSON_PREFIX = "absent"


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
