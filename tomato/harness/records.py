"""The JSON records a command leaves under ``data/results``: one schema per kind, one writer,
one reader.

An evaluation run is a folder (:mod:`tomato.harness.results`) and the trained model has its
card (:mod:`tomato.harness.modelcard`); every other run is one JSON file of a *kind*:

=============  ============================  ==========================================
kind           file name under the root      written by
=============  ============================  ==========================================
``timing``     ``*.json``, ``timing.json``   ``python -m tomato time`` (protocol ``paper``
                                             or ``robust``), a sweep, a notebook's live run
``bench``      ``bench_*.json``              ``python -m tomato bench`` (the merge step)
``static``     ``bench-static_*.json``       ``python -m tomato bench --static``
``fidelity``   ``fidelity_*.json``           ``python -m tomato fidelity``
``agreement``  ``agreement_*.json``          ``python -m tomato agree``
``payoff``     ``payoff_*.json``             ``python -m tomato bench --payoff``
=============  ============================  ==========================================

:func:`write` checks a record against its kind before it replaces the file atomically;
:func:`read` returns None for a file that is not of the kind (unreadable, or missing a
key), so a page skips a stray file instead of failing on it; :func:`find` lists a kind's
records directly under a folder. The book reads through :mod:`tomato.book.runs`, which
calls these.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .provenance import jsonable
from .results import atomic_write_text

__all__ = ["Kind", "KINDS", "kind", "write", "read", "find"]


def _timing(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get("config"), dict) and data["config"].get("protocol") in ("paper", "robust")


def _named_rows(prefix: str) -> Callable[[Mapping[str, Any]], bool]:
    def check(data: Mapping[str, Any]) -> bool:
        return any(isinstance(r, dict) and str(r.get("name", "")).startswith(prefix) for r in data["rows"])
    return check


def _agreement(data: Mapping[str, Any]) -> bool:
    return all(isinstance(r, dict) and "setting" in r and "ari_either" in r for r in data["rows"])


def _payoff(data: Mapping[str, Any]) -> bool:
    return bool(data["rows"]) and all(isinstance(r, dict) and "oracle_speedup" in r for r in data["rows"])


def _fidelity(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get("baseline"), dict) and "n" in data["baseline"]


@dataclass(frozen=True)
class Kind:
    """One kind of record: its name, the file names it takes, the keys it must hold (each
    a dict or list as the record's JSON has it), and a last check of its content."""

    name: str
    pattern: str
    keys: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], bool] = lambda data: True

    def accepts(self, data: Any) -> bool:
        """Whether ``data`` (a parsed JSON document) is a record of this kind."""
        if not isinstance(data, dict) or not all(k in data for k in self.keys):
            return False
        if "rows" in self.keys and not isinstance(data["rows"], list):
            return False
        if not isinstance(data.get("provenance"), dict):
            return False
        return bool(self.check(data))


#: Every kind of JSON record, by name.
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("timing", "*.json", ("config", "rows", "provenance"), _timing),
    Kind("bench", "bench_*.json", ("rows", "provenance"), _named_rows("merge step: ")),
    Kind("static", "bench-static_*.json", ("rows", "provenance"), _named_rows("eager: ")),
    Kind("fidelity", "fidelity_*.json", ("baseline", "provenance"), _fidelity),
    Kind("agreement", "agreement_*.json", ("rows", "provenance"), _agreement),
    Kind("payoff", "payoff_*.json", ("rows", "provenance"), _payoff),
)}


def kind(name: str | Kind) -> Kind:
    """The :class:`Kind` called ``name``; ValueError naming the kinds for another name."""
    if isinstance(name, Kind):
        return name
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"no record kind {name!r}; the kinds are {', '.join(KINDS)}") from None


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as JSON that reads well and stays small: indented, except that a top-level
    list of flat rows (per-photo ``rows`` of a full-val study: tens of thousands) has one
    compact row a line (three quarters of the indented size)."""
    def value(v: Any) -> str:
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            return "[\n" + ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in v) + "\n ]"
        return json.dumps(v, indent=1).replace("\n", "\n ")
    return "{\n" + ",\n".join(f" {json.dumps(str(k))}: {value(v)}" for k, v in data.items()) + "\n}"


def write(of: str | Kind, path: Path | str, record: Mapping[str, Any]) -> Path:
    """Replace ``path`` atomically with ``record`` (made JSON-safe); ValueError, before
    anything is written, when the record is not of kind ``of``. Returns the path."""
    k, path = kind(of), Path(path)
    data = jsonable(dict(record))
    if not k.accepts(data):
        article = "an" if k.name[0] in "aeiou" else "a"
        raise ValueError(f"{article} {k.name} record needs {', '.join(k.keys)}; got {', '.join(data)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dumps(data) + "\n")
    return path


def read(of: str | Kind, path: Path | str) -> dict[str, Any] | None:
    """The record at ``path`` if it is one of kind ``of``, else None."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if kind(of).accepts(data) else None


def find(of: str | Kind, root: Path | str) -> list[tuple[Path, dict[str, Any]]]:
    """Every record of kind ``of`` directly under ``root``, as (path, record), by file name."""
    k = kind(of)
    found = ((p, read(k, p)) for p in sorted(Path(root).glob(k.pattern)))
    return [(p, data) for p, data in found if data is not None]
