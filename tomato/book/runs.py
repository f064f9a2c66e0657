"""Reading recorded runs: where results live and what a results folder holds.

Nothing here runs a model: it reads what :mod:`tomato.harness.evaluate`,
:mod:`tomato.harness.sweep` and :mod:`tomato.harness.speed` wrote. It is the book's one
reader of ``data/results``: :func:`records` / :func:`record` read the JSON records of each
kind (:mod:`tomato.harness.records`: timing, bench, static, fidelity, agreement) and the
recorded run folders below are read here too.

:func:`recorded_runs` finds every folder under a root that holds a ``sweep.csv`` or
per-variant run folders (``*/summary.json``, or ``*/config.json`` + ``predictions.csv``
of a run still in progress) and returns one :class:`RecordedRun` per folder: its result
rows (``RecordedRun.rows()``, the columns of :data:`tomato.harness.sweep.COLUMNS`),
timing rows and provenance; :class:`VariantRun` is one variant's folder.
:func:`repo_root` / :func:`repo_path` / :func:`run_folder` place runs in the repository.

pandas (the ``[book]`` extra) is imported inside the functions that need it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..harness import manifest
from ..harness import records as schema
from ..harness import speed, variants
from ..harness.models import WeightsInfo

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def repo_root(start: Path | str | None = None) -> Path:
    """The repository root (the folder holding ``_toc.yml``), searched upward from ``start``
    (default: the working directory), so notebooks work from ``notebooks/`` in JupyterLab
    and from the root under papermill."""
    here = Path(start or Path.cwd()).resolve()
    # Above the working directory first; then the checkout this package was installed
    # from (``pip install -e``), so a notebook copied out of the checkout still finds it.
    for d in (*(here, *here.parents), Path(__file__).resolve().parents[2]):
        if (d / "_toc.yml").is_file() and (d / "tomato").is_dir():
            return d
    raise FileNotFoundError(f"no repository root (a folder with _toc.yml) above {here}, and the tomato package "
                            "is not installed from a checkout: run the notebook inside the checkout, or install "
                            "it there with pip install -e .")


def shown(path: Path | str) -> str:
    """``path`` as a page prints it: relative to the repository root when inside it,
    else as given (a results folder outside the checkout is fine)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(repo_root()))
    except (ValueError, FileNotFoundError):
        return str(p)


def repo_path(path: Path | str) -> Path:
    """``path`` if absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p


def run_folder(runs: Path | str, kind: str, weights: WeightsInfo, data: Any) -> Path:
    """``<runs>/<kind>_<model>_<data>_<weights sha[:8]>`` under the repository root: one
    folder per identity, so that a notebook rerun with other data or weights starts a new
    resumable run instead of being refused by the old one."""
    text = str(data)
    if text != "smoke":
        text = "_".join(Path(text).parts[-2:])
    tag = re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-") or "data"
    return repo_path(runs) / f"{kind}_{weights.model}_{tag}_{weights.sha256[:8]}"


def _results(root: Path | str) -> Path:
    """``root`` against the repository root when relative (as given when there is none)."""
    root = Path(root)
    if root.is_absolute():
        return root
    try:
        return repo_path(root)
    except FileNotFoundError:
        return root.resolve()


def records(of: str, root: Path | str = "data/results") -> list[tuple[Path, dict[str, Any]]]:
    """Every JSON record of kind ``of`` (see :data:`tomato.harness.records.KINDS`) directly
    under ``root`` and in each model's recording folder below it (one with a manifest,
    :mod:`tomato.harness.manifest`), as (path, record); a stray file is skipped."""
    root = _results(root)
    folders = sorted(p for p in root.iterdir() if (p / manifest.MANIFEST).is_file()) if root.is_dir() else []
    return [found for folder in (root, *folders) for found in schema.find(of, folder)]


def record(of: str, path: Path | str) -> dict[str, Any] | None:
    """The record of kind ``of`` at ``path`` (relative: against the repository root), or None."""
    return schema.read(of, _results(path))


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
    return variants.canonical(config.get("variant") or (summary or {}).get("variant") or folder.name)


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
        return variants.order(list(self.variants))

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
        runs = [self.variants[s] for s in variants.order(list(self.variants))]
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
            base["variants"] = variants.order(list(self.variants))
        return base

    def predictions(self, variant: str) -> pd.DataFrame:
        return self.variants[variants.parse(variant).spec].predictions()

    def rows(self) -> pd.DataFrame:
        """One row per variant with the columns of :data:`tomato.harness.sweep.COLUMNS` plus
        ``n_total`` and ``complete``; ``sweep.csv`` when it exists, else assembled from the
        variant folders and the batch-1 rows of ``timing.json`` (NaN where not measured)."""
        import pandas as pd

        from ..harness.sweep import COLUMNS

        stats = {s: v.stats() for s, v in self.variants.items()}
        if self.sweep is not None:
            df = self.sweep.copy()
            df["variant"] = [variants.canonical(s) for s in df["variant"]]
        else:
            timed = {variants.canonical(r["variant"]): r for r in speed.at_batch(self.timing)}
            records = []
            for spec in variants.order(list(self.variants) + list(timed)):
                try:
                    v = variants.parse(spec)
                    name, value = v.parameter
                    meta = {"label": v.label, "kind": v.kind, "parameter": name, "value": value}
                except ValueError:
                    meta = {"label": spec, "kind": "", "parameter": "", "value": ""}
                s, t = stats.get(spec, {}), timed.get(spec, {})
                evaluated = {k: s.get(k) for k in _EVALUATED}
                # Every other column of the sweep's schema comes from the timing row, when timed.
                records.append({"variant": spec, **meta, **evaluated,
                                **{k: t.get(k) for k in COLUMNS if k not in evaluated and k not in meta
                                   and k != "variant"}})
            df = pd.DataFrame(records, columns=list(COLUMNS))
        df["n_total"] = [stats.get(s, {}).get("n_total") for s in df["variant"]]
        df["complete"] = [stats.get(s, {}).get("complete", False) for s in df["variant"]]
        for col in _NUMERIC:
            if col in df:  # older records carry columns newer ones dropped, and the other way round
                df[col] = pd.to_numeric(df[col], errors="coerce")
        return df.reset_index(drop=True)


_EVALUATED = ("top1", "top5", "n_images", "n_bad", "tokens_mean", "tokens_min", "tokens_max", "pretrained",
              "weights_source")
_NUMERIC = ("top1", "top5", "tokens_mean", "median_s", "iqr_s", "paper_mean_s", "throughput_img_s", "speedup",
            "speedup_low", "speedup_high", "gflops", "ideal_speedup")


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
    timing = schema.read("timing", path / "timing.json")
    if timing is not None:
        run.timing = list(timing["rows"])
        run.timing_config = timing["config"]
        run.timing_provenance = timing["provenance"]
    return run


def _is_run_dir(d: Path) -> bool:
    if (d / "sweep.csv").is_file():
        return True
    for child in d.iterdir():
        if child.is_dir() and ((child / "summary.json").is_file()
                               or ((child / "config.json").is_file() and (child / "predictions.csv").is_file())):
            return True
    return False


def recorded_run(root: Path | str, name: str) -> RecordedRun | None:
    """The recorded run folder ``name`` under ``root`` (None where absent)."""
    return next((r for r in recorded_runs(root) if r.name == name), None)


def recorded_runs(root: Path | str = "data/results") -> list[RecordedRun]:
    """Every result folder under ``root`` (``root`` included, relative paths against the
    repository root): one holding ``sweep.csv`` or sub-folders with ``summary.json`` (or
    ``config.json`` + ``predictions.csv``: a run in progress). Sorted by path; an absent
    ``root`` gives an empty list."""
    root = _results(root)
    if not root.is_dir():
        return []
    dirs = [root, *sorted(p for p in root.rglob("*") if p.is_dir() and not p.name.startswith("."))]
    return [_load_run(d, root) for d in dirs if _is_run_dir(d)]


def recorded_variant(root: Path | str, spec: str, weights_sha256: str | None = None) -> VariantRun | None:
    """The recorded evaluation of variant ``spec`` under ``root`` with the most photos,
    among the runs of the weights ``weights_sha256`` when any holds it (else of any
    weights: check :attr:`VariantRun.config`); None when no run holds ``spec``."""
    spec = variants.canonical(spec)
    found = [r.variants[spec] for r in recorded_runs(root) if spec in r.variants]
    same = [v for v in found if weights_sha256 and v.config.get("weights_sha256") == weights_sha256]
    return max(same or found, key=lambda v: v.stats().get("n_images") or 0, default=None)
