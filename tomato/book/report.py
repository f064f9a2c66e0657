"""Helpers the result notebooks share: honest banners, repository paths, recorded runs,
tables beside the paper's, and the plots of the Results chapter.

Nothing here runs a model: it reads what :mod:`tomato.harness.evaluate`, :mod:`tomato.harness.sweep`
and :mod:`tomato.harness.speed` wrote (or returned) and says where each number came from.

Recorded runs
    :func:`recorded_runs` finds every folder under a root that holds a ``sweep.csv`` or
    per-variant run folders (``*/summary.json``, or ``*/config.json`` +
    ``predictions.csv`` of a run still in progress), and returns one
    :class:`RecordedRun` per folder: its result rows (``RecordedRun.rows()``, the
    columns of :data:`tomato.harness.sweep.COLUMNS`), timing rows and provenance.
Beside the paper
    :func:`table1` puts sweep-like rows next to :data:`tomato.book.paper.TABLE1`;
    :func:`reproduction_summary` gives one row per item of
    :data:`tomato.book.paper.FIGURES_AND_CLAIMS` with our value and a status.
A proxy that random weights cannot spoil
    :func:`prediction_agreement`: how often each variant's top-1 equals the unpatched
    model's top-1 on the same image (how much merging perturbs the network).

pandas and matplotlib (the ``[book]`` extra) are imported inside the functions that
need them, so ``import tomato.book.report`` works without them.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import paper
from ..harness.models import WeightsInfo

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = [
    "repo_root",
    "repo_path",
    "weights_banner",
    "weights_note",
    "VariantRun",
    "RecordedRun",
    "recorded_runs",
    "runs_overview",
    "provenance_table",
    "read_predictions",
    "prediction_agreement",
    "tokens_cut_range",
    "tome_token_cut",
    "latency_changes",
    "table1",
    "reproduction_summary",
    "order_variants",
    "plot_latency",
    "plot_speedup",
    "plot_throughput",
    "plot_tradeoff",
    "plot_tokens_flops",
    "styled",
    "save_timing",
    "run_folder",
    "pick_table1_run",
    "latency_ratios_vs_paper",
    "plot_agreement",
    "plot_tradeoff_panels",
    "timing_noise",
    "display_name",
    "table1_views",
    "timing_view",
    "sweep_view",
    "explain_differences",
    "DEIT_B_DIMS",
    "eval_gflops",
    "add_eval_gflops",
]

NOT_JETSON_PREFIX = "absent"


# --------------------------------------------------------------------------- paths, banners
def repo_root(start: Path | str | None = None) -> Path:
    """The repository root (the folder holding ``_toc.yml``), searched upward from ``start``
    (default: the working directory), so notebooks work from ``notebooks/`` in JupyterLab
    and from the root under papermill."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file() and (d / "tomato").is_dir():
            return d
    raise FileNotFoundError(f"no repository root (a folder with _toc.yml) above {here}")


def repo_path(path: Path | str) -> Path:
    """``path`` if absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p


def weights_banner(weights: WeightsInfo) -> str:
    """Markdown stating which weights a notebook runs on; loud when they are random."""
    if weights.pretrained:
        return (f"**Weights:** `{weights.model}` from `{weights.source}` "
                f"(sha256 `{weights.sha256[:12]}…`).")
    # A plain blockquote: it renders the same in JupyterLab and in the built book.
    return (f"> **Warning: random-init weights.** `{weights.model}` runs with "
            f"`{weights.source}` because no pretrained weights can be downloaded where this "
            "page was built. Token merging, token counts, timings and pictures below are real "
            "computations on real photos, but every *accuracy* number from these weights is "
            "meaningless (chance level) and must not be read as accuracy. Rerun with "
            "`-p checkpoint /path/to/deit_base_patch16_224.pth` or on an online machine for "
            "real numbers.")


def weights_note(pretrained: bool | None) -> str:
    """A short tag for figure titles and table captions: empty for pretrained weights."""
    if pretrained:
        return ""
    return "random-init weights: top-1/top-5 are NOT accuracy"


# --------------------------------------------------------------------------- reading runs
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_predictions(path: Path | str) -> pd.DataFrame:
    """``predictions.csv`` (or a run folder holding one) as a DataFrame with an added
    integer column ``top1`` (the first of ``top5``); ``correct1``/``correct5`` as bool."""
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        p = p / "predictions.csv"
    df = pd.read_csv(p, dtype={"top5": str})
    df["top5"] = df["top5"].fillna("").astype(str)
    df["top1"] = df["top5"].str.split().str[0].astype("Int64")
    for col in ("correct1", "correct5"):
        if col in df:
            df[col] = df[col].map(lambda v: str(v).strip().lower() in {"1", "true", "1.0"})
    return df


def _kind_order(spec: str) -> tuple:
    from ..harness.sweep import parameter
    from ..harness.variants import parse

    try:
        v = parse(spec)
    except ValueError:
        return (9, spec, 0.0, "")
    name, value = parameter(v)
    kinds = {"deit": 0, "tome": 1, "tomato": 2}
    method = str(v.get("method") or "")
    # ToMe: r ascending; ToMato: sim descending (merges more), keep descending.
    order = {"r": 0, "sim": 1, "keep_ratio": 2, "tokens": 3}.get(name, 4)
    key = float(value) if value != "" else 0.0
    if name == "r":
        val = key
    elif name == "sim":
        val = -math.log10(key) if key > 0 else 1e9
    else:
        val = -key
    return (kinds.get(v.kind, 9), order, method, val)


def order_variants(specs: Sequence[str]) -> list[str]:
    """Baseline first, then ToMe by r, then ToMato by sim (merging more to the right),
    keep ratio and token budget; the parallel method after the faithful one."""
    return sorted(dict.fromkeys(specs), key=_kind_order)


@dataclass(eq=False)
class VariantRun:
    """One variant's evaluation folder (``config.json``, ``predictions.csv``, ...)."""

    variant: str
    folder: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None
    provenance: dict[str, Any]

    def predictions(self) -> pd.DataFrame:
        return read_predictions(self.folder)

    @property
    def has_predictions(self) -> bool:
        return (self.folder / "predictions.csv").is_file()

    def stats(self) -> dict[str, Any]:
        """top1/top5 (%), n_images (done), n_total, n_bad, tokens_mean/min/max, complete:
        from ``predictions.csv`` (the source of truth; ``summary.json`` is only written at
        the end of a session), else from ``summary.json``."""
        n_total = self.config.get("n_images")
        bad = _count_rows(self.folder / "bad_images.csv")
        out: dict[str, Any] = {"n_total": n_total, "n_bad": bad}
        if self.has_predictions:
            df = self.predictions()
            n = len(df)
            tokens = df["tokens"].dropna() if "tokens" in df else []
            out.update(
                n_images=n,
                top1=100.0 * df["correct1"].mean() if n else None,
                top5=100.0 * df["correct5"].mean() if n else None,
                tokens_mean=float(tokens.mean()) if len(tokens) else None,
                tokens_min=float(tokens.min()) if len(tokens) else None,
                tokens_max=float(tokens.max()) if len(tokens) else None,
            )
        elif self.summary:
            out.update({k: self.summary.get(k) for k in
                        ("n_images", "top1", "top5", "tokens_mean", "tokens_min", "tokens_max")})
            out["n_bad"] = self.summary.get("n_bad", bad)
        else:
            out.update(n_images=0, top1=None, top5=None, tokens_mean=None, tokens_min=None, tokens_max=None)
        done = (out.get("n_images") or 0) + (out.get("n_bad") or 0)
        out["complete"] = bool(n_total) and done >= n_total
        out["pretrained"] = self.config.get("pretrained")
        out["weights_source"] = self.config.get("weights_source")
        return out


def _count_rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8") as fh:
        return max(0, sum(1 for line in fh if line.strip()) - 1)


def _variant_of(folder: Path, config: Mapping[str, Any], summary: Mapping[str, Any] | None) -> str:
    from ..harness.variants import parse

    spec = config.get("variant") or (summary or {}).get("variant") or folder.name
    try:
        return parse(spec).spec
    except ValueError:
        return str(spec)


@dataclass(eq=False)
class RecordedRun:
    """A folder of results: a sweep (``sweep.csv``, ``timing.json``) or several evaluations.

    ``variants`` maps canonical variant specs to their folders; ``timing`` holds the rows
    of ``timing.json`` (empty when absent); ``sweep`` is ``sweep.csv`` (None until the
    sweep has finished).
    """

    path: Path
    name: str
    variants: dict[str, VariantRun] = field(default_factory=dict)
    sweep: pd.DataFrame | None = None
    timing: list[dict[str, Any]] = field(default_factory=list)
    timing_config: dict[str, Any] | None = None
    timing_provenance: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """True when ``sweep.csv`` exists and every variant folder holds all its images."""
        return self.sweep is not None and all(v.stats()["complete"] for v in self.variants.values())

    @property
    def planned(self) -> list[str]:
        """The variants the sweep was asked for, when known (from timing.json or sweep.csv)."""
        if self.timing_config and self.timing_config.get("variants"):
            return list(self.timing_config["variants"])
        if self.sweep is not None:
            return list(self.sweep["variant"])
        return order_variants(list(self.variants))

    @property
    def status(self) -> str:
        """'complete', or a sentence saying what is missing."""
        if self.complete:
            return "complete"
        parts = []
        done = [s for s, v in self.variants.items() if v.stats()["complete"]]
        parts.append(f"{len(done)} of {len(self.variants)} variant folders complete")
        if not self.timing:
            parts.append("no timing.json yet")
        if self.sweep is None:
            parts.append("no sweep.csv yet")
        return "partial: " + ", ".join(parts)

    @property
    def pretrained(self) -> bool | None:
        vals = {v.config.get("pretrained") for v in self.variants.values()}
        vals.discard(None)
        if len(vals) == 1:
            return bool(vals.pop())
        return False if vals else None

    @property
    def provenance(self) -> dict[str, Any]:
        """Provenance of the run: the baseline's (or first variant's) ``provenance.json``,
        with the date range over all variants and the timing run."""
        runs = [self.variants[s] for s in order_variants(list(self.variants))]
        base = dict(runs[0].provenance) if runs else dict(self.timing_provenance or {})
        if runs and not base:
            base = dict(runs[0].config)
        for k in ("model", "weights_source", "weights_sha256", "pretrained", "data", "n_images"):
            if runs and k not in base and k in runs[0].config:
                base[k] = runs[0].config[k]
        dates = [r.provenance.get("date_utc") for r in runs if r.provenance.get("date_utc")]
        if self.timing_provenance and self.timing_provenance.get("date_utc"):
            dates.append(self.timing_provenance["date_utc"])
        if dates:
            lo, hi = min(dates), max(dates)
            base["date_utc"] = lo if lo == hi else f"{lo} … {hi}"
        base.pop("resumed", None)
        if runs:
            base.pop("variant", None)
            base["variants"] = order_variants(list(self.variants))
        return base

    def predictions(self, variant: str) -> pd.DataFrame:
        from ..harness.variants import parse

        return self.variants[parse(variant).spec].predictions()

    def rows(self) -> pd.DataFrame:
        """One row per variant with the columns of :data:`tomato.harness.sweep.COLUMNS` plus
        ``n_total`` and ``complete``; ``sweep.csv`` when it exists, else assembled from the
        variant folders and the batch-1 rows of ``timing.json`` (NaN where not measured)."""
        import pandas as pd

        from ..harness.sweep import COLUMNS, parameter
        from ..harness.variants import parse

        stats = {s: v.stats() for s, v in self.variants.items()}
        if self.sweep is not None:
            df = self.sweep.copy()
            df["variant"] = [canonical_spec(s) for s in df["variant"]]
        else:
            timed = {canonical_spec(r["variant"]): r for r in self.timing if r.get("batch_size", 1) == 1}
            records = []
            for spec in order_variants(list(self.variants) + list(timed)):
                try:
                    v = parse(spec)
                    name, value = parameter(v)
                    meta = {"label": v.label, "kind": v.kind, "parameter": name, "value": value}
                except ValueError:
                    meta = {"label": spec, "kind": "", "parameter": "", "value": ""}
                s, t = stats.get(spec, {}), timed.get(spec, {})
                records.append({
                    "variant": spec, **meta,
                    **{k: s.get(k) for k in ("top1", "top5", "n_images", "n_bad", "tokens_mean",
                                             "tokens_min", "tokens_max", "pretrained", "weights_source")},
                    **{k: t.get(k) for k in ("median_s", "iqr_s", "paper_mean_s", "throughput_img_s",
                                             "speedup", "gflops", "ideal_speedup")},
                })
            df = pd.DataFrame(records, columns=list(COLUMNS))
        df["n_total"] = [stats.get(s, {}).get("n_total") for s in df["variant"]]
        df["complete"] = [stats.get(s, {}).get("complete", False) for s in df["variant"]]
        for col in ("top1", "top5", "tokens_mean", "median_s", "iqr_s", "paper_mean_s",
                    "throughput_img_s", "speedup", "gflops", "ideal_speedup"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        return df.reset_index(drop=True)


def canonical_spec(spec: str) -> str:
    from ..harness.variants import parse

    try:
        return parse(spec).spec
    except ValueError:
        return str(spec)


def _load_run(path: Path, root: Path) -> RecordedRun:
    import pandas as pd

    try:
        name = str(path.relative_to(root)) if path != root else path.name
    except ValueError:
        name = path.name
    run = RecordedRun(path=path, name=name)
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        config = _read_json(child / "config.json")
        summary = _read_json(child / "summary.json")
        if not isinstance(config, dict):
            if not isinstance(summary, dict):
                continue
            config = {k: summary.get(k) for k in ("variant", "model", "weights_source", "pretrained",
                                                   "data", "n_images")}
        if config.get("kind", "eval") != "eval":
            continue
        if not (summary or (child / "predictions.csv").is_file()):
            continue
        prov = _read_json(child / "provenance.json")
        spec = _variant_of(child, config, summary)
        run.variants[spec] = VariantRun(spec, child, config, summary if isinstance(summary, dict) else None,
                                        prov if isinstance(prov, dict) else {})
    sweep_csv = path / "sweep.csv"
    if sweep_csv.is_file():
        try:
            run.sweep = pd.read_csv(sweep_csv)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            run.sweep = None
    timing = _read_json(path / "timing.json")
    if isinstance(timing, dict):
        run.timing = list(timing.get("rows") or [])
        run.timing_config = timing.get("config")
        run.timing_provenance = timing.get("provenance")
    return run


def _is_run_dir(d: Path) -> bool:
    if (d / "sweep.csv").is_file():
        return True
    for child in d.iterdir():
        if child.is_dir() and ((child / "summary.json").is_file()
                               or ((child / "config.json").is_file() and (child / "predictions.csv").is_file())):
            return True
    return False


def recorded_runs(root: Path | str = "data/results") -> list[RecordedRun]:
    """Every result folder under ``root`` (``root`` included, relative paths against the
    repository root): one holding ``sweep.csv`` or sub-folders with ``summary.json`` (or
    ``config.json`` + ``predictions.csv``: a run in progress). Sorted by path; an absent
    ``root`` gives an empty list."""
    root = Path(root)
    if not root.is_absolute():
        try:
            root = repo_path(root)
        except FileNotFoundError:
            root = root.resolve()
    if not root.is_dir():
        return []
    dirs = [root, *sorted(p for p in root.rglob("*") if p.is_dir() and not p.name.startswith("."))]
    return [_load_run(d, root) for d in dirs if _is_run_dir(d)]


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
            "variants": ", ".join(order_variants(list(run.variants))),
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


def _machine_short(prov: Mapping[str, Any]) -> str:
    """'AMD EPYC CPU (2 cores)', 'NVIDIA H100 GPU' or 'Jetson <board>' for short reasons."""
    machine = prov.get("machine") or {}
    board = machine.get("board_model")
    if board and not str(board).startswith(NOT_JETSON_PREFIX):
        return f"{board}"
    gpu = prov.get("gpu_name") or machine.get("cuda_device")
    if gpu and not str(gpu).startswith("none") and str(prov.get("device", "cuda")).startswith("cuda"):
        return f"{gpu} GPU"
    cpu = prov.get("cpu_model") or machine.get("cpu_model") or "unknown"
    n = machine.get("cpu_count")
    return f"{cpu} CPU" + (f" ({n} cores)" if n else "")


def _commit_text(prov: Mapping[str, Any]) -> str:
    git = prov.get("git") or {}
    commit = str(git.get("commit", "unknown"))
    short = commit[:10] if commit != "unknown" else commit
    if git.get("dirty") is True:
        short += " (dirty)"
    return short


def provenance_table(prov: Mapping[str, Any]) -> pd.DataFrame:
    """The key fields of a provenance record (:func:`tomato.harness.provenance.collect`, an
    evaluation's ``provenance.json`` or a timing record's) as a two-column table."""
    import pandas as pd

    machine = prov.get("machine") or {}
    sha = prov.get("weights_sha256")
    fields = [
        ("model", prov.get("model")),
        ("weights source", prov.get("weights_source")),
        ("weights sha256", f"{sha[:12]}…" if isinstance(sha, str) and sha else None),
        ("pretrained", prov.get("pretrained")),
        ("data", prov.get("data")),
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


# --------------------------------------------------------------------------- measures
def _predictions_of(source: Any) -> dict[str, pd.DataFrame]:
    """variant spec -> predictions, from a RecordedRun, a run folder, or a mapping."""
    if isinstance(source, RecordedRun):
        return {s: v.predictions() for s, v in source.variants.items() if v.has_predictions}
    if isinstance(source, Mapping):
        return {canonical_spec(k): v for k, v in source.items()}
    root = Path(source)
    if not root.is_absolute():
        root = repo_path(root)
    if not root.is_dir():
        return {}
    return _predictions_of(_load_run(root, root.parent))


def prediction_agreement(source: Any, baseline: str = "deit") -> pd.DataFrame:
    """Agreement of each variant's predictions with the baseline's on the same images.

    ``source``: a :class:`RecordedRun`, a run folder, or a mapping of variant spec ->
    predictions DataFrame (as :func:`read_predictions` returns). Images are joined on
    ``index``. Columns: ``variant``, ``n`` (images both have), ``top1_agreement`` (% of
    images whose top-1 equals the baseline's top-1), ``top5_overlap`` (mean % of the
    baseline's top-5 classes found in the variant's top-5). Meaningful with random
    weights too: it measures how much merging changes the network's output. Empty when
    the baseline is missing.
    """
    import pandas as pd

    cols = ["variant", "n", "top1_agreement", "top5_overlap"]
    preds = _predictions_of(source)
    base_spec = canonical_spec(baseline)
    if base_spec not in preds:
        return pd.DataFrame(columns=cols)
    base = preds[base_spec][["index", "top1", "top5"]]
    records = []
    for spec in order_variants(list(preds)):
        m = base.merge(preds[spec][["index", "top1", "top5"]], on="index", suffixes=("_b", "_v"))
        n = len(m)
        if n:
            agree = 100.0 * float((m["top1_b"] == m["top1_v"]).mean())
            overlap = 100.0 * float(sum(
                len(set(a.split()) & set(b.split())) / max(1, len(a.split()))
                for a, b in zip(m["top5_b"], m["top5_v"])) / n)
        else:
            agree = overlap = float("nan")
        records.append({"variant": spec, "n": n, "top1_agreement": agree, "top5_overlap": overlap})
    return pd.DataFrame(records, columns=cols)


def tokens_cut_range(predictions: Any, num_patches: int = paper.NUM_PATCHES) -> tuple[float, float, float]:
    """(min %, max %, mean %) of patch tokens removed per image: ``100 * (1 - tokens /
    num_patches)`` over the rows of ``predictions`` (a predictions.csv path, a run folder
    or a DataFrame with a ``tokens`` column). The paper's 8.16%–20.92% for sim=1e-7 is
    this (min, max)."""
    import pandas as pd

    df = predictions if isinstance(predictions, pd.DataFrame) else read_predictions(predictions)
    tokens = pd.to_numeric(df["tokens"], errors="coerce").dropna()
    if tokens.empty:
        raise ValueError("no token counts in these predictions")
    cut = 100.0 * (1.0 - tokens / float(num_patches))
    return float(cut.min()), float(cut.max()), float(cut.mean())


def tome_token_cut(r: int, depth: int = 12, num_patches: int = paper.NUM_PATCHES,
                   num_prefix_tokens: int = 1) -> tuple[float, float]:
    """ToMe with ``r``: (% of patch tokens gone after the last block, mean % fewer tokens
    per block than the unmerged model), from :func:`tomato.harness.flops.tokens_schedule_tome`."""
    from ..harness import flops

    dims = flops.ViTDims(embed_dim=768, depth=depth, num_heads=12, mlp_ratio=4.0, patch_size=16,
                         num_patches=num_patches, num_prefix_tokens=num_prefix_tokens)
    sched = flops.tokens_schedule_tome(dims, r)
    final = 100.0 * (dims.num_tokens - sched[-1][1]) / num_patches
    mean_tokens = sum(m for _, m in sched) / depth
    mean_cut = 100.0 * (dims.num_tokens - mean_tokens) / dims.num_tokens
    return final, mean_cut


def _deit_b_dims() -> Any:
    from ..harness import flops

    return flops.ViTDims(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16,
                         num_patches=196, num_prefix_tokens=1)


#: Shape of DeiT-B/16 at 224x224 (what the paper runs), for FLOPs without building the model.
DEIT_B_DIMS = _deit_b_dims()


def eval_gflops(run: RecordedRun, dims: Any = None) -> dict[str, float]:
    """Mean GFLOPs per image of every variant of ``run`` over the images it evaluated,
    from each image's kept tokens (``predictions.csv``) via
    :func:`tomato.harness.speed.variant_flops`. ``dims``: a :class:`tomato.harness.flops.ViTDims`
    (default :data:`DEIT_B_DIMS`). ``sweep.csv``'s ``gflops`` is the FLOPs at the mean
    token count; this is the mean of each image's FLOPs, which differs slightly because
    attention is quadratic in the tokens."""
    from ..harness.speed import variant_flops
    from ..harness.variants import parse

    dims = dims or DEIT_B_DIMS
    out: dict[str, float] = {}
    for spec, vr in run.variants.items():
        try:
            v = parse(spec)
        except ValueError:
            continue
        if v.kind == "tomato":
            if not vr.has_predictions:
                continue
            tokens = vr.predictions()["tokens"].dropna()
            if tokens.empty:
                continue
            # Mean over images of each image's FLOPs (attention is quadratic in tokens).
            per = {k: variant_flops(dims, v, float(k)) for k in tokens.unique()}
            f = float(tokens.map(per).mean())
        else:
            f = variant_flops(dims, v, dims.num_patches)
        out[spec] = f / 1e9
    return out


def add_eval_gflops(rows: pd.DataFrame, run: RecordedRun, dims: Any = None) -> pd.DataFrame:
    """``rows`` with a ``gflops_eval`` column from :func:`eval_gflops` and
    ``ideal_speedup_eval`` (baseline's ``gflops_eval`` over the variant's)."""
    g = eval_gflops(run, dims)
    df = rows.copy()
    df["gflops_eval"] = [g.get(canonical_spec(s), float("nan")) for s in df["variant"]]
    base = g.get(canonical_spec(paper.BASELINE))
    df["ideal_speedup_eval"] = [base / v if base and v == v else float("nan") for v in df["gflops_eval"]]
    return df


def latency_changes(rows: pd.DataFrame, column: str = "median_s", baseline: str = paper.BASELINE,
                    tome: str = paper.TOME) -> pd.DataFrame:
    """Per variant: ``column`` and its change in % vs the baseline and vs ToMe r=2 (when
    present), measured in the same run: the ratios to compare with the paper's -22.19% /
    -6.06%."""
    import pandas as pd

    df = rows[["variant", column]].copy()
    df["variant"] = [canonical_spec(s) for s in df["variant"]]
    ref = dict(zip(df["variant"], pd.to_numeric(df[column], errors="coerce")))
    for name, spec in (("vs_baseline_%", canonical_spec(baseline)), ("vs_tome_r2_%", canonical_spec(tome))):
        r = ref.get(spec)
        df[name] = [100.0 * (v / r - 1.0) if r and v == v and r == r else float("nan")
                    for v in pd.to_numeric(df[column], errors="coerce")]
    return df


# --------------------------------------------------------------------------- paper tables
def _num(v: Any) -> str:
    """1e-07 -> '1e-7', 0.85 -> '0.85'."""
    import re

    if isinstance(v, float):
        text = f"{v:g}"
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)
    return str(v)


def display_name(spec: str) -> str:
    """A short name for tables and plots: ``baseline``, ``ToMe r=2``, ``ToMato sim=1e-7``,
    ``ToMato keep=0.85``, ``ToMato parallel sim=1e-7``."""
    from ..harness.variants import parse

    try:
        v = parse(spec)
    except ValueError:
        return spec
    if v.kind == "deit":
        return "baseline"
    if v.kind == "tome":
        return f"ToMe r={v.get('r')}"
    parts = ["ToMato"]
    if v.get("method") not in (None, "faithful"):
        parts.append(str(v.get("method")))
    for key, name in (("sim", "sim"), ("keep_ratio", "keep"), ("tokens", "tokens")):
        if v.get(key) is not None:
            parts.append(f"{name}={_num(v.get(key))}")
    for key in ("metric", "rule"):
        if v.get(key) is not None:
            parts.append(f"{key}={v.get(key)}")
    return " ".join(parts)


_label = display_name


def table1(ours: pd.DataFrame, agreement: pd.DataFrame | None = None, *, extra: bool = True,
           baseline: str = paper.BASELINE) -> pd.DataFrame:
    """The paper's Table 1 beside ``ours`` (sweep-like rows: ``variant`` and any of
    ``top1``, ``top5``, ``median_s``, ``tokens_mean``).

    Columns: Model, paper top-1, ours top-1, paper top-5, ours top-5, paper latency s,
    ours median latency s, paper latency vs DeiT-B %, ours vs baseline %, ours tokens
    kept (patch tokens leaving block 0, of 196), ours top-1 agreement with baseline %.
    The paper's three rows come first; with ``extra`` every other variant of ``ours``
    follows (paper columns empty). Missing values are NaN.
    """
    import pandas as pd

    nan = float("nan")
    df = ours.copy()
    df["variant"] = [canonical_spec(s) for s in df["variant"]]
    by = {r["variant"]: r for r in df.to_dict("records")}
    agree = {}
    if agreement is not None and len(agreement):
        agree = dict(zip((canonical_spec(s) for s in agreement["variant"]), agreement["top1_agreement"]))

    def num(row: Mapping[str, Any] | None, key: str) -> float:
        if not row:
            return nan
        try:
            v = float(row.get(key))
        except (TypeError, ValueError):
            return nan
        return v

    base_ours = num(by.get(canonical_spec(baseline)), "median_s")
    paper_base = paper.TABLE1_BY_VARIANT[paper.BASELINE]["latency_s"]
    specs = [r["variant"] for r in paper.TABLE1]
    if extra:
        specs += [s for s in order_variants(list(by)) if s not in specs]
    records = []
    for spec in specs:
        p = paper.TABLE1_BY_VARIANT.get(spec)
        o = by.get(spec)
        lat = num(o, "median_s")
        records.append({
            "Model": p["model"] if p else _label(spec),
            "variant": spec,
            "paper top-1": p["top1"] if p else nan,
            "ours top-1": num(o, "top1"),
            "paper top-5": p["top5"] if p else nan,
            "ours top-5": num(o, "top5"),
            "paper latency s": p["latency_s"] if p else nan,
            "ours median latency s": lat,
            "paper latency vs DeiT-B %": 100.0 * (p["latency_s"] / paper_base - 1.0) if p else nan,
            "ours vs baseline %": 100.0 * (lat / base_ours - 1.0) if base_ours == base_ours and lat == lat else nan,
            "ours tokens kept": num(o, "tokens_mean"),
            "ours top-1 agreement with baseline %": agree.get(spec, nan),
        })
    return pd.DataFrame(records)


def _fmt(v: Any, unit: str = "", digits: int = 2, sign: bool = False) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    if f != f:
        return "–"
    text = f"{f:+.{digits}f}" if sign else f"{f:.{digits}f}"
    return f"{text} {unit}".strip()


def _val(row: Mapping[str, Any] | None, key: str) -> float:
    """``row[key]`` as a float; NaN when the row or value is missing or not a number."""
    try:
        return float(row[key]) if row and row.get(key) is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _is_jetson(prov: Mapping[str, Any]) -> bool:
    board = (prov.get("machine") or {}).get("board_model")
    return bool(board) and not str(board).startswith(NOT_JETSON_PREFIX)


def reproduction_summary(run: RecordedRun | None, tradeoff: RecordedRun | None = None, *,
                         merge_page: str = "03_merge", tradeoff_page: str = "06_tradeoff",
                         timing_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per item of :data:`tomato.book.paper.FIGURES_AND_CLAIMS`: Item, Paper, Ours,
    Status, Reason.

    ``run`` holds the Table-1 variants (``deit``, ``tome:r=2``, ``tomato:sim=1e-07``);
    ``tradeoff`` a sweep over r and sim for Figure 3 (defaults to ``run``);
    ``timing_rows`` overrides the latencies of ``run`` (sweep-like rows with
    ``median_s``). Statuses: "reproduced"; "differs"; "needs pretrained weights";
    "needs a Jetson"; "pipeline reproduced, number not comparable: ..."; "not run".
    """
    import pandas as pd

    rows = run.rows() if run is not None else pd.DataFrame(columns=["variant"])
    if timing_rows is not None and len(timing_rows):
        t = {canonical_spec(s): v for s, v in zip(timing_rows["variant"], timing_rows["median_s"])}
        rows = rows.copy()
        rows["median_s"] = [t.get(s, m) for s, m in zip(rows["variant"], rows.get("median_s", []))]
    by = {r["variant"]: r for r in rows.to_dict("records")}
    prov = run.provenance if run is not None else {}
    pretrained = bool(run.pretrained) if run is not None else False
    jetson = _is_jetson(prov)
    machine = _machine_short(prov) if prov else "this machine"
    data = str(prov.get("data", "?"))
    mini = "imagenet-mini" in data.lower() or prov.get("n_images") == 3923
    agreement = prediction_agreement(run) if run is not None else pd.DataFrame(columns=["variant"])
    agree = dict(zip(agreement.get("variant", []), agreement.get("top1_agreement", [])))
    lat = latency_changes(rows) if "median_s" in rows and len(rows) else None
    changes = {} if lat is None else {r["variant"]: r for r in lat.to_dict("records")}

    RANDOM = "pipeline reproduced, number not comparable: random-init weights"
    weights_reason = ("random-init weights: top-1/top-5 are chance level, not DeiT-B's accuracy"
                      if not pretrained else "")

    def accuracy_status(ours: float, paper_value: float, tol: float) -> tuple[str, str]:
        if ours != ours:
            return "not run", "no evaluation of this variant was found"
        if not pretrained:
            return "needs pretrained weights", weights_reason
        close = abs(ours - paper_value) <= tol
        where = "ImageNet-Mini" if mini else f"other data ({data})"
        return ("reproduced" if close and mini else "differs" if not close else "close, other data",
                f"pretrained weights on {where}; tolerance {tol} pt")

    out = []
    for claim in paper.FIGURES_AND_CLAIMS:
        cid, ours, status, reason = claim["id"], "–", "not run", "nothing recorded"
        if cid.startswith("table1:"):
            spec, what = cid[len("table1:"):].rsplit(":", 1)
            o = by.get(spec)
            if what in ("top1", "top5"):
                val = _val(o, what)
                ours = _fmt(val, "%")
                if o and not o.get("complete", True) and val == val:
                    ours += f" (partial: {o.get('n_images')} of {o.get('n_total')} images)"
                if what == "top1" and spec in agree and spec != paper.BASELINE:
                    ours += f" (same top-1 as the baseline on {agree[spec]:.1f} %)"
                status, reason = accuracy_status(val, claim["value"], 1.0)
            else:
                val = _val(o, "median_s")
                ours = _fmt(val, "s", 4) + (" (median, batch 1)" if val == val else "")
                if val != val:
                    status, reason = "not run", "no timing recorded"
                elif jetson:
                    status = "reproduced" if abs(val / claim["value"] - 1) <= 0.10 else "differs"
                    reason = f"measured on {machine}; tolerance 10 %"
                else:
                    status = "needs a Jetson"
                    reason = f"measured on {machine}, not a Jetson Nano; absolute seconds depend on the device"
        elif cid == "figure1":
            tome_r = by.get(paper.TOME)
            tomato_r = by.get(paper.TOMATO)
            parts = []
            if _val(tome_r, "tokens_mean") == _val(tome_r, "tokens_mean"):  # not NaN
                final, _ = tome_token_cut(2)
                parts.append(f"ToMe r=2: {tome_r['tokens_mean']:.0f} patch tokens after block 0, "
                             f"{paper.NUM_PATCHES - round(final * paper.NUM_PATCHES / 100)} after block 11")
            single = _tomato_single_merge(run)
            if single is not None:
                parts.append("ToMato: " + ("token count changes in block 0 only" if single
                                           else "token count changes after block 0 (unexpected)"))
            if parts:
                ours = "; ".join(parts)
                status = {True: "reproduced", False: "differs", None: "not run"}[single]
                reason = ("token counts per block of our runs (weight-independent structure)" if single is not None
                          else "no ToMato sim=1e-7 run with per-block token counts found")
        elif cid == "figure2":
            ours = f"merged patches drawn on real photos: see {merge_page}"
            status = RANDOM if not pretrained else "reproduced"
            reason = ("which patches merge depends on the block-0 features, i.e. on the weights"
                      if not pretrained else "pictures, compare by eye")
        elif cid == "figure3":
            tr = tradeoff or run
            if tr is not None:
                trows = tr.rows()
                n_tome = int((trows["kind"] == "tome").sum())
                n_tomato = int((trows["kind"] == "tomato").sum())
                ours = f"{n_tome} ToMe and {n_tomato} ToMato points ({tr.name}); see {tradeoff_page}"
                if not pretrained:
                    status, reason = "needs pretrained weights", ("top-1 axis is chance level with random-init "
                                                                  "weights; latency axis measured on " + machine)
                elif not jetson:
                    status, reason = "needs a Jetson", "accuracy axis comparable; latency axis measured on " + machine
                else:
                    status, reason = "reproduced", "compare the curves by eye"
        elif cid == "token_cut_sim_1e-7":
            vr = run.variants.get(paper.TOMATO) if run is not None else None
            if vr is not None and vr.has_predictions:
                lo, hi, mean = tokens_cut_range(vr.predictions())
                ours = f"{lo:.2f}–{hi:.2f} % (mean {mean:.2f} %, {len(vr.predictions())} images)"
                if not pretrained:
                    status, reason = RANDOM, "the similarity is computed from the weights' features"
                else:
                    ok = abs(lo - paper.TOKEN_CUT_SIM_1E7[0]) <= 3 and abs(hi - paper.TOKEN_CUT_SIM_1E7[1]) <= 3
                    status = "reproduced" if ok and mini else "differs" if not ok else "close, other data"
                    reason = "range of per-image token cuts; tolerance 3 points on each end"
        elif cid == "tome_r2_token_cut":
            final, mean_cut = tome_token_cut(2)
            ours = f"{final:.2f} % after the last block ({mean_cut:.1f} % fewer tokens per block on average)"
            status = "differs"
            reason = ("r=2 removes exactly 2 tokens in each of 12 blocks (24 of 196), whatever the weights; "
                      "no count gives ~15 %")
        elif cid in ("latency_vs_deit", "latency_vs_tome"):
            c = changes.get(paper.TOMATO)
            key = "vs_baseline_%" if cid == "latency_vs_deit" else "vs_tome_r2_%"
            val = c.get(key) if c else float("nan")
            if val == val and val is not None:
                ours = _fmt(val, "%", sign=True) + " (median, batch 1, same run)"
                if not pretrained:
                    status = RANDOM + (", and not a Jetson" if not jetson else "")
                    reason = f"ToMato's token count (hence its speed-up) depends on the weights; measured on {machine}"
                elif not jetson:
                    status, reason = "needs a Jetson", f"ratio measured on {machine}; speed-ups depend on the device"
                else:
                    status = "reproduced" if abs(val - claim["value"]) <= 5 else "differs"
                    reason = "ratio measured in one run; tolerance 5 points"
            else:
                status, reason = "not run", "no timing of these variants recorded"
        elif cid.startswith(("top1_vs", "top5_vs")):
            what = "top1" if cid.startswith("top1") else "top5"
            other = paper.BASELINE if cid.endswith("deit") else paper.TOME
            a, b = by.get(paper.TOMATO), by.get(other)
            val = _val(a, what) - _val(b, what)
            ours = _fmt(val, "pt", sign=True)
            status, reason = accuracy_status(val, claim["value"], 0.5)
        out.append({"Item": claim["item"], "Paper": claim["paper"], "Ours": ours,
                    "Status": status, "Reason": reason})
    return pd.DataFrame(out, columns=["Item", "Paper", "Ours", "Status", "Reason"])


def _tomato_single_merge(run: RecordedRun | None) -> bool | None:
    """True when every ToMato image of ``run`` keeps its block-0 token count in every
    later block (``tokens_per_block == tokens + 1 prefix``); None without ToMato runs."""
    if run is None:
        return None
    import pandas as pd

    vr = run.variants.get(paper.TOMATO)
    if vr is None or not vr.has_predictions:
        return None
    df = vr.predictions()
    if "tokens_per_block" not in df:
        return None
    prefix = 1 if "distilled" not in str(vr.config.get("model", "")) else 2
    tpb = pd.to_numeric(df["tokens_per_block"], errors="coerce")
    return bool(((tpb - (df["tokens"] + prefix)).abs() < 1e-6).all())


# --------------------------------------------------------------------------- display, records
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
        {"selector": "td", "props": "white-space: normal; vertical-align: top; overflow-wrap: anywhere;"},
        {"selector": "th", "props": "vertical-align: bottom;"},
        {"selector": "", "props": "font-size: 0.9em;"},
    ]
    if widths:
        styles.append({"selector": "", "props": "table-layout: fixed; width: 100%;"})
        for k, col in enumerate(df.columns, 1):
            if col in widths:
                styles.append({"selector": f"th:nth-child({k}), td:nth-child({k})",
                               "props": f"width: {widths[col]};"})
    return sty.set_table_styles(styles, overwrite=False)


def table1_views(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`table1` split into two tables narrow enough for a book page: accuracy
    (with the agreement column) and latency/tokens."""
    acc = ["Model", "paper top-1", "ours top-1", "paper top-5", "ours top-5", "ours top-1 agreement with baseline %"]
    lat = ["Model", "paper latency s", "ours median latency s", "paper latency vs DeiT-B %", "ours vs baseline %",
           "ours tokens kept"]
    return table[acc].copy(), table[lat].copy()


def timing_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Timing rows (:func:`tomato.harness.speed.measure_variants`) with short headers for display."""
    import pandas as pd

    cols = {"paper_mean_s": "paper mean s", "median_s": "median s", "iqr_s": "IQR s", "speedup": "speed-up ×",
            "tokens_mean": "tokens", "gflops": "GFLOPs", "ideal_speedup": "ideal ×"}
    out = pd.DataFrame({"variant": [display_name(s) for s in rows["variant"]]})
    for src, dst in cols.items():
        out[dst] = pd.to_numeric(rows[src], errors="coerce").to_numpy() if src in rows else float("nan")
    return out


def sweep_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Sweep rows (plus agreement and ``gflops_eval`` when present) with short headers:
    variant, top-1 %, same top-1 % (agreement with the baseline), top-5 kept % (top-5
    overlap), tokens "mean (min–max)", median s, speed-up ×, GFLOPs, ideal ×."""
    import pandas as pd

    def num(col: str) -> Any:
        return pd.to_numeric(rows[col], errors="coerce").to_numpy() if col in rows else float("nan")

    g, ideal = ("gflops_eval", "ideal_speedup_eval") if "gflops_eval" in rows else ("gflops", "ideal_speedup")
    tokens = [f"{m:.1f} ({lo:.0f}–{hi:.0f})" if m == m and lo == lo else "–"
              for m, lo, hi in zip(num("tokens_mean"), num("tokens_min"), num("tokens_max"))]
    return pd.DataFrame({
        "variant": [display_name(s) for s in rows["variant"]],
        "top-1 %": num("top1"), "same top-1 %": num("top1_agreement"), "top-5 kept %": num("top5_overlap"),
        "tokens (min–max)": tokens, "median s": num("median_s"), "speed-up ×": num("speedup"), "GFLOPs": num(g),
        "ideal ×": num(ideal),
    })


def explain_differences(run: RecordedRun, *, weights: WeightsInfo, data: Any, device: str,
                        others: Sequence[RecordedRun] = ()) -> str:
    """A numbered Markdown list: why ``run``'s numbers (and ``others``') differ from the
    paper's, with the numbers that show it (agreement, token cuts, ToMe's count, machine)."""
    from ..harness import timing

    def cut_text(r: RecordedRun) -> str:
        vr = r.variants.get(paper.TOMATO)
        if vr is None or not vr.has_predictions:
            return f"{r.name}: no ToMato sim=1e-7 run"
        lo, hi, mean = tokens_cut_range(vr.predictions())
        return f"{r.name}: {lo:.1f}–{hi:.1f}% (mean {mean:.1f}%) over {vr.stats()['n_images']} images"

    info = timing.machine_info()
    agree = prediction_agreement(run)
    agree = dict(zip(agree["variant"], agree["top1_agreement"]))
    n = run.provenance.get("n_images")
    final, per_block = tome_token_cut(2)
    items = []
    if not weights.pretrained:
        items.append(
            f"**Weights.** The paper uses trained DeiT-B weights; these runs use `{weights.source}`, an "
            "untrained network, because no pretrained weights can be downloaded here. Its top-1/top-5 are those "
            "of a random classifier over 1,000 classes (expected 0.1% / 0.5%; on a handful of images a single "
            "lucky hit moves them by several points), so the accuracy columns say nothing about DeiT, ToMe or "
            f"ToMato. The agreement column does: ToMato sim=1e-7 keeps the baseline's top-1 on "
            f"{agree.get(paper.TOMATO, float('nan')):.1f}% of the {n} images, ToMe r=2 on "
            f"{agree.get(paper.TOME, float('nan')):.1f}%.")
    smoke = " (seven photos bundled with scikit-image, with hand-assigned nearest classes: a smoke test, " \
            "not a benchmark)" if str(data) == "smoke" else ""
    items.append(f"**Data.** The paper evaluates the 3,923 ImageNet-Mini validation images; these runs use "
                 f"`{data}`, {n} images{smoke}.")
    items.append(
        "**Token counts depend on the weights.** ToMato merges neighbours whose block-0 similarity reaches "
        "`sim`; the features come from the weights, so the paper's 8.16–20.92% token cut for sim=1e-7 is a "
        "property of trained DeiT-B. Here: " + "; ".join(cut_text(r) for r in (run, *others)) + ". ToMe's count "
        f"does not depend on the weights: r=2 removes 2 tokens in each of the 12 blocks, 24 of 196 "
        f"({final:.1f}%) by the last block, {per_block:.1f}% fewer tokens per block on average; the paper's "
        "\"about 15%\" matches neither.")
    items.append(
        "**Device and protocol.** The paper times a Jetson Nano GPU with Nsight Systems (mean of 10 "
        f"inferences, batch 1, cold runs included). Our latency is measured on `{device}` "
        f"({info['cpu_model']}, {info['cpu_count']} cores) as the median after warm-up with the variants "
        "interleaved, so only *ratios* between variants of the same run compare with the paper's "
        "−22.19% / −6.06% (see the timing page); absolute seconds do not.")
    items.append(
        f"**Software.** The authors ran their reference code on timm 0.4.12; we run timm {info['timm']} and our "
        "own implementations of ToMe and ToMato in one harness, with the same preprocessing for every variant "
        "(resize 256 bicubic, centre crop 224).")
    return "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1))


def save_timing(path: Path | str, rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> Path:
    """Write timing rows as ``timing.json`` (``config``, ``rows``, ``provenance``), the
    format :func:`tomato.harness.sweep.sweep` writes, so a notebook's measurement is kept with the
    machine it ran on. Returns the file's path."""
    from ..harness import provenance
    from ..harness.results import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"config": dict(config), "rows": list(rows), "provenance": provenance.collect(**config)}
    atomic_write_text(path, json.dumps(provenance.jsonable(record), indent=2) + "\n")
    return path


def run_folder(runs: Path | str, kind: str, weights: WeightsInfo, data: Any) -> Path:
    """``<runs>/<kind>_<model>_<data>_<weights sha[:8]>`` under the repository root: one
    folder per identity, so that a notebook rerun with other data or weights starts a new
    resumable run instead of being refused by the old one."""
    import re

    text = str(data)
    if text != "smoke":
        text = "_".join(Path(text).parts[-2:])
    tag = re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-") or "data"
    return repo_path(runs) / f"{kind}_{weights.model}_{tag}_{weights.sha256[:8]}"


def pick_table1_run(runs: Sequence[RecordedRun]) -> RecordedRun | None:
    """The run to compare with Table 1: among those holding all three Table-1 variants,
    the one with the most evaluated images (a complete one first); None if none has them."""
    need = {r["variant"] for r in paper.TABLE1}
    ok = [r for r in runs if need <= set(r.variants)]
    if not ok:
        return None

    def key(r: RecordedRun) -> tuple:
        n = min((r.variants[s].stats().get("n_images") or 0) for s in need)
        return (r.complete, bool(r.timing), n)

    return max(ok, key=key)


def timing_noise(rows: pd.DataFrame, threshold: float = 0.2) -> str:
    """A warning (Markdown) when the timing in ``rows`` is too noisy for its ratios to mean
    much: some variant's IQR exceeds ``threshold`` times its median (typically a machine
    shared with other jobs). Empty string when the timing looks clean."""
    import pandas as pd

    if not {"median_s", "iqr_s"} <= set(rows):
        return ""
    rel = pd.to_numeric(rows["iqr_s"], errors="coerce") / pd.to_numeric(rows["median_s"], errors="coerce")
    rel = rel.dropna()
    if rel.empty or rel.max() <= threshold:
        return ""
    return (f"> **Noisy timing:** the interquartile range reaches {100 * rel.max():.0f}% of the median "
            f"(median over variants {100 * rel.median():.0f}%), so differences between variants below "
            "are within the noise and their ratios are not reliable. The machine was probably busy with "
            "other work; re-time on an idle machine (e.g. `python -m tomato time ...`) with more runs.")


def latency_ratios_vs_paper(rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's latency ratios beside ours from the same run (``rows``: ``variant``,
    ``median_s`` and, optionally, ``paper_mean_s``): ToMato-B vs DeiT-B, ToMato-B vs
    ToMe-B, ToMe-B vs DeiT-B, in % (negative = faster)."""
    import pandas as pd

    t = {r["variant"]: r for r in paper.TABLE1}
    df = rows.copy()
    df["variant"] = [canonical_spec(s) for s in df["variant"]]
    by = {r["variant"]: r for r in df.to_dict("records")}

    def ratio(a: str, b: str, col: str) -> float:
        try:
            return 100.0 * (float(by[a][col]) / float(by[b][col]) - 1.0)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return float("nan")

    pairs = [("ToMato-B vs DeiT-B", paper.TOMATO, paper.BASELINE, paper.LATENCY_VS_DEIT),
             ("ToMato-B vs ToMe-B", paper.TOMATO, paper.TOME, paper.LATENCY_VS_TOME),
             ("ToMe-B vs DeiT-B", paper.TOME, paper.BASELINE, None)]
    records = []
    for name, a, b, stated in pairs:
        records.append({
            "comparison": name,
            "paper (text) %": stated if stated is not None else float("nan"),
            "paper (Table 1) %": 100.0 * (t[a]["latency_s"] / t[b]["latency_s"] - 1.0),
            "ours, median %": ratio(a, b, "median_s"),
            "ours, paper protocol %": ratio(a, b, "paper_mean_s") if "paper_mean_s" in df else float("nan"),
        })
    return pd.DataFrame(records)
