"""The manifest of a model's recorded evidence, and the check that refuses stale evidence.

``python -m tomato record`` writes every weights-dependent record of one model into one
folder (``data/results/<model>/``) with one ``manifest.json``: the weights (sha256) it
describes, the command, the data, and one entry per record (path, kind, weights sha256,
code commit, device, wall and floor seconds). :func:`write` is its one writer and
:func:`read` its one reader; the recording also keeps its progress there, so a killed
run resumes from it (on this machine or on another one that checked the folder out).

:func:`stale` is what ``make book`` runs first: a record that names one of the models
under ``data/weights/`` but not that model's committed weights, or a record inside a
model's folder that its manifest does not list, is stale evidence, and the build stops
with one ``error:`` line for each. Records of seeded random-init weights (the cost pages'
DeiT-B) name no trained model and pass.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from .results import atomic_write_text

__all__ = ["MANIFEST", "write", "read", "listed", "stale", "write_part", "read_part"]

MANIFEST = "manifest.json"
#: Files of a record folder that are not records themselves: a run folder's parts and state.
_RUN_PARTS = {"provenance.json", "summary.json", "predictions.csv", "bad_images.csv", ".lock"}


def write(folder: Path | str, manifest: Mapping[str, Any]) -> Path:
    """Replace ``folder/manifest.json`` atomically with ``manifest``."""
    path = Path(folder) / MANIFEST
    atomic_write_text(path, json.dumps(dict(manifest), indent=1, sort_keys=True) + "\n")
    return path


def read(folder: Path | str) -> dict[str, Any] | None:
    """``folder/manifest.json`` as written by :func:`write`, or None where there is none.
    A file that is not a manifest (no ``weights_sha256`` and ``records``) is a ValueError."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not a manifest of recorded evidence ({e})") from None
    if not isinstance(data, dict) or "weights_sha256" not in data or not isinstance(data.get("records"), list):
        raise ValueError(f"{path} is not a manifest of recorded evidence (no weights_sha256 and records)")
    return data


def write_part(path: Path | str, part: Mapping[str, Any]) -> None:
    """Replace one part of an unfinished study (a recording's scratch: rows of one batch and
    their forward seconds) atomically."""
    atomic_write_text(Path(path), json.dumps(dict(part)))


def read_part(path: Path | str) -> dict[str, Any] | None:
    """The part at ``path`` as :func:`write_part` wrote it, or None where there is none or it
    is not one (it is then computed again)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("rows"), list) and "forward_s" in data else None


def listed(manifest: Mapping[str, Any]) -> set[str]:
    """The paths (relative to the manifest's folder) of the records a manifest lists."""
    return {str(r["path"]) for r in manifest.get("records", [])}


def _weights_of(data: Any) -> tuple[str | None, str | None]:
    """(weights source, sha256) a record names, from its top level, config or provenance."""
    if not isinstance(data, dict):
        return None, None
    for part in (data, data.get("config"), data.get("provenance")):
        if isinstance(part, dict) and part.get("weights_sha256"):
            source = part.get("weights_source") or part.get("weights")
            return (str(source) if source else None), str(part["weights_sha256"])
    return None, None


def _records(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every JSON record under ``root`` (a run folder counts by its ``config.json``),
    skipping hidden folders (a recording's scratch) and manifests."""
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.name in _RUN_PARTS | {MANIFEST}:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        yield path, data


def _trained_model(source: str | None, names: Mapping[str, str]) -> str | None:
    """The model under ``data/weights`` a weights source names (``checkpoint:.../data/weights/
    <name>/model.safetensors`` or the short name itself), else None."""
    if not source:
        return None
    for name in names:
        if f"data/weights/{name}/" in source.replace("\\", "/") or source in (name, f"checkpoint:{name}"):
            return name
    return None


def committed_weights(weights_root: Path | str) -> dict[str, str]:
    """short name -> the weights sha256 of each model card under ``weights_root``."""
    out = {}
    for card in sorted(Path(weights_root).glob("*/model_card.json")):
        try:
            out[card.parent.name] = str(json.loads(card.read_text(encoding="utf-8"))["weights_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def stale(results: Path | str, weights_root: Path | str) -> list[str]:
    """One line per stale record under ``results`` (empty: every record is current).

    Stale: a record of a model under ``weights_root`` whose weights sha256 is not that
    model's committed one; a record inside a model's folder (``results/<name>/``) that its
    manifest does not list, or that folder without a complete manifest; a record the
    manifest lists that is missing or names other weights."""
    results = Path(results)
    names = committed_weights(weights_root)
    problems: list[str] = []
    for path, data in _records(results):
        rel = path.relative_to(results)
        folder = rel.parts[0] if len(rel.parts) > 1 else None
        source, sha = _weights_of(data)
        model = _trained_model(source, names)
        if model is None and folder in names:
            model = folder
        if model is None or sha is None:
            continue
        if sha != names[model]:
            problems.append(f"{rel}: recorded with weights sha256 {sha[:8]}…, but the committed {model} is "
                            f"{names[model][:8]}…: rerun python -m tomato record --checkpoint {model}")
    for name, sha in names.items():
        folder = results / name
        if not folder.is_dir():
            continue
        try:
            m = read(folder)
        except ValueError as e:
            problems.append(str(e))
            continue
        if m is None or not m.get("complete"):
            problems.append(f"{name}/: no complete {MANIFEST}: the recording of {name} has not finished; rerun "
                            f"python -m tomato record --checkpoint {name} to complete it")
            continue
        if m["weights_sha256"] != sha:
            problems.append(f"{name}/{MANIFEST}: describes weights {m['weights_sha256'][:8]}…, but the committed "
                            f"{name} is {sha[:8]}…: rerun python -m tomato record --checkpoint {name}")
        known = listed(m)
        for path, _ in _records(folder):
            top = path.relative_to(folder).parts[0]
            if top not in known:
                problems.append(f"{name}/{path.relative_to(folder)}: not listed in {name}/{MANIFEST}: delete it, "
                                f"or rerun python -m tomato record --checkpoint {name}")
        for entry in known:
            if not (folder / entry).exists():
                problems.append(f"{name}/{entry}: listed in {name}/{MANIFEST} but missing")
    return problems
