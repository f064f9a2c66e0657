"""Tables and labels for the book: provenance records, short machine names, weights labels,
the pandas Styler every table is shown with, and the warnings a page shows once.

:func:`provenance_table` turns a provenance record (model, weights, data, machine,
commit, date) into a two-column table; :func:`machine_short` names a record's machine in
a few words; :func:`styled` formats any table. pandas is imported inside the functions.

How a page names weights and warns: :func:`source_label`, the one label of a weights
source (``data/weights/<name>`` for the model trained here; a record of other weights
under that name says so), the page's weights banner, and the warnings a page shows in
full once (noisy timing, one label for several weights).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..harness.models import WEIGHTS_DIR, WeightsInfo

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
    then = stale(source, prov.get("weights_sha256"))
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


def provenance_side_by_side(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`provenance_table` of several records in one table: a column per record
    (``records``: its name -> provenance), a row per field any of them holds ("–" where
    one does not), so that what two records share is read once and what differs stands out."""
    import pandas as pd

    tables = [provenance_table(prov).set_index("field")["value"].rename(name) for name, prov in records.items()]
    return pd.concat(tables, axis=1, sort=False).fillna("–").rename_axis("field").reset_index()


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


# --------------------------------------------------------------------------- weights labels, warnings shown once
def trained_here(source: str) -> str | None:
    """The model folder under ``data/weights/`` of a ``checkpoint:<path>`` source trained
    here, else None. Read from the path's text, not this checkout's files, so that a record
    made in another checkout of the project names the same model."""
    kind, _, path = source.partition(":")
    parts = Path(path).parts if kind == "checkpoint" else ()
    # The last ``data/weights/<name>/<file>`` in the path: the project's own weights folder.
    for i in range(len(parts) - 4, -1, -1):
        if parts[i:i + 2] == (WEIGHTS_DIR.parent.name, WEIGHTS_DIR.name):
            return parts[i + 2]
    return None


def stale(source: str, sha: str | None) -> str:
    """"" when a record measured the weights now committed under its name (or they are not
    the project's own); else "other weights, sha256 `<12 hex>…`". One model, one recording:
    a record of weights no longer here is named so, never as the model now committed."""
    here = trained_here(source)
    card = WEIGHTS_DIR / str(here) / "model_card.json"
    if not here or not sha or not card.is_file():
        return ""
    from ..harness.modelcard import read_card

    return "" if read_card(card).raw.get("weights_sha256") == sha else f"other weights, sha256 `{sha[:12]}…`"


def source_label(source: str, sha: str | None = None) -> str:
    """A weights source as a page prints it: ``data/weights/<name>`` (trained here) for the
    project's own model, whatever checkout recorded it, :func:`stale` when ``sha`` is not
    the committed model's; else the source as recorded."""
    here = trained_here(source)
    if not here:
        return f"`{source}`"
    then = stale(source, sha)
    return f"`data/weights/{here}` (trained here{': ' + then if then else ''})"


def record_label(rec: Mapping[str, Any]) -> str:
    """:func:`source_label` of a record's config or provenance (``weights_source`` and
    ``weights_sha256``)."""
    return source_label(str(rec.get("weights_source")), rec.get("weights_sha256"))


def data_label(data: Any) -> str:
    """A recorded run's data as a page prints it: the split and its data set
    (``imagenette/val``), not the recording machine's path; ``smoke`` as it is."""
    return "/".join(Path(str(data)).parts[-2:])


def recorded_weights(prov: Mapping[str, Any], photos: int | None = None) -> str:
    """One Markdown line naming the weights and data of a recorded run from its provenance,
    without the recording checkout's absolute paths."""
    source = str(prov.get("weights_source"))
    here = trained_here(source)
    named = f"trained here (`data/weights/{here}`, " if here else f"from `{source}` ("
    count = f"{photos:,} photos of " if photos else ""
    then = stale(source, prov.get("weights_sha256"))
    return (f"**Weights:** `{prov.get('model')}` {named}sha256 `{str(prov.get('weights_sha256'))[:12]}…`"
            f"{'; ' + then if then else ''}); data: {count}`{data_label(prov.get('data'))}`.")


def weights_banner(weights: WeightsInfo) -> str:
    """Markdown naming the weights a notebook runs on: the model trained here, other
    weights by their source; loud when they are random."""
    here = trained_here(weights.source)
    if here is not None:
        return (f"**Weights:** `{weights.model}` **trained here** ([its model card](00_model.ipynb)), "
                f"`data/weights/{here}` (sha256 `{weights.sha256[:12]}…`).")
    if weights.pretrained:
        return (f"**Weights:** `{weights.model}` from `{weights.source}` "
                f"(sha256 `{weights.sha256[:12]}…`).")
    # One line, once a page: what runs, and what its numbers are not.
    return (f"> **Seeded random-init `{weights.model}`:** this page measures the architecture (token "
            "counts, timings, pictures), not accuracy; set `checkpoint` in the parameters cell for trained weights.")


def one_label(records: Mapping[str, Mapping[str, Any]]) -> str:
    """A note (Markdown) when records under one weights label hold different weights:
    ``records`` maps a name to a timing record (its ``config`` and ``provenance`` name
    ``weights_source``, ``weights_sha256`` and ``torch``). Seeded random-init weights depend
    on the torch version, so ``random-init:seed=0`` on two machines can be two networks.
    "" when none differ."""
    by: dict[str, dict[str, list[str]]] = {}
    torch: dict[str, str] = {}
    for name, record in records.items():
        rec = {**(record.get("provenance") or {}), **(record.get("config") or {})}
        source, sha = rec.get("weights_source"), rec.get("weights_sha256")
        if source and sha:
            by.setdefault(str(source), {}).setdefault(str(sha), []).append(name)
            torch.setdefault(str(sha), str(rec.get("torch") or (rec.get("machine") or {}).get("torch") or "?"))
    lines = []
    for source, shas in by.items():
        if len(shas) > 1:
            each = "; ".join(f"sha256 `{sha[:8]}…` (torch {torch[sha]}: {', '.join(f'`{n}`' for n in names)})"
                             for sha, names in shas.items())
            lines.append(f"**One label, {len(shas)} different weights:** `{source}` stands for {each}. "
                         "Seeded initialisation depends on the torch version and on the code that seeds it, so "
                         "these did not run the same network; compare their ratios, not their seconds.")
    return "\n\n".join(lines)


def weights_note(pretrained: bool | None) -> str:
    """A short tag for figure titles and table captions: empty for pretrained weights."""
    if pretrained:
        return ""
    return "random-init weights: top-1/top-5 are NOT accuracy"


def first(said: set[str] | None, key: str) -> bool:
    """Whether the warning ``key`` is new to a page that keeps what it has ``said`` (a set
    the page owns: :attr:`tomato.book.notebook.Page.said`), and note it as said. Each warning
    appears once in full; later runs on the page get its short form. None: always new."""
    if said is None:
        return True
    new = key not in said
    said.add(key)
    return new

