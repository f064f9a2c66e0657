"""Evaluation results on disk: resumable, written atomically, never mixing two runs.

A run folder holds::

    config.json        the run's identity (model, weights hash, variant, data, batch...)
    provenance.json    where/when/with which code it ran (resumed sessions appended)
    predictions.csv    one row per image (see PRED_COLUMNS, plus any extra columns)
    bad_images.csv     images that could not be processed (index, path, error)
    summary.json       top-1/top-5 and token statistics

Every file is replaced atomically, so killing the process at any moment leaves either
the previous or the new version of each file, never a torn one. Re-opening the folder
with the *same* config resumes (``done`` tells which indices to skip); a different
config is refused, because silently appending results of another model or threshold to
an old run is the easiest way to publish a wrong number.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .provenance import jsonable

__all__ = [
    "atomic_write_text",
    "RunStore",
    "PRED_COLUMNS",
    "BAD_COLUMNS",
    "CONFIG_FILE",
    "PROVENANCE_FILE",
    "PREDICTIONS_FILE",
    "BAD_FILE",
    "SUMMARY_FILE",
]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
PROVENANCE_FILE = "provenance.json"
PREDICTIONS_FILE = "predictions.csv"
BAD_FILE = "bad_images.csv"
SUMMARY_FILE = "summary.json"

#: Fixed leading columns of predictions.csv; rows may carry extra columns after these.
PRED_COLUMNS: tuple[str, ...] = ("index", "path", "label", "top5", "correct1", "correct5", "tokens")
BAD_COLUMNS: tuple[str, ...] = ("index", "path", "error")
_OPTIONAL = frozenset({"tokens"})  # e.g. unknown for a model without a token counter
_MISSING = object()  # distinguishes an absent config key from one set to None


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically (temp file in the same dir, fsync, rename)."""
    path = Path(path)
    # Same directory: os.replace is only atomic within one filesystem.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; keep the target's mode, or a conventional 0644.
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened on Windows.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _normalise_config(config: Mapping[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so that (1, 2) == [1, 2] and Path("x") == "x", exactly as
    # they will compare after being read back from config.json.
    return json.loads(json.dumps(jsonable(dict(config)), sort_keys=True))


# --- cell formatting: rows in memory always equal what a reload would give -----------

def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays/scalars, torch tensors
        return value.tolist()
    return value


def _fmt(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)  # repr round-trips a float exactly
    if isinstance(value, (list, tuple)):
        return " ".join(_fmt(v) for v in value)
    return str(value)


def _parse_number(text: str) -> int | float | str | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse(column: str, text: str) -> Any:
    if column in ("index", "label", "correct1", "correct5"):
        return int(text)
    if column == "top5":
        return [int(t) for t in text.split()]
    if column in ("path", "error"):
        return text
    # tokens and extra columns: numbers where they look like numbers.
    return _parse_number(text)


def _normalise_row(row: Mapping[str, Any], required: Sequence[str], kind: str) -> dict[str, Any]:
    missing = [c for c in required if c not in row and c not in _OPTIONAL]
    if missing:
        raise ValueError(f"{kind} row is missing columns {missing}: {dict(row)}")
    out: dict[str, Any] = {}
    for col in [*required, *(k for k in row if k not in required)]:
        text = _fmt(row.get(col))
        if text == "":
            if col in required:
                out[col] = None
            # An empty extra is written as "" and not read back: drop it here too.
            continue
        if col in ("correct1", "correct5"):
            text = str(int(bool(float(text))))
        out[col] = _parse(col, text)
    return out


def _to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _fmt(row.get(c)) for c in columns})
    return buf.getvalue()


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows = []
        for raw in reader:
            row = {}
            for col in columns:
                text = raw.get(col) or ""
                # Extras absent from a row were written as "" -> drop them again.
                if text == "" and col not in PRED_COLUMNS and col not in BAD_COLUMNS:
                    continue
                row[col] = _parse(col, text) if text != "" else None
            rows.append(row)
    return rows


class RunStore:
    """One evaluation run's folder. Create it with :meth:`RunStore.open`."""

    def __init__(
        self,
        out: Path,
        config: dict[str, Any],
        rows: Iterable[dict[str, Any]] = (),
        bad: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.out = Path(out)
        self.config = config
        self._rows: dict[int, dict[str, Any]] = {r["index"]: r for r in rows}
        self._bad: dict[int, dict[str, Any]] = {b["index"]: b for b in bad}

    @classmethod
    def open(
        cls,
        out: Path | str,
        config: Mapping[str, Any],
        provenance: Mapping[str, Any] | None = None,
    ) -> RunStore:
        """Create ``out`` or resume it; refuse (``ValueError``) if it holds another config."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        wanted = _normalise_config(config)
        config_path = out / CONFIG_FILE
        if config_path.exists():
            stored = json.loads(config_path.read_text(encoding="utf-8"))
            diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k, _MISSING) != wanted.get(k, _MISSING))
            if diff:
                details = "; ".join(
                    f"{k}: stored {stored.get(k, '<absent>')!r} vs now {wanted.get(k, '<absent>')!r}"
                    for k in diff
                )
                raise ValueError(
                    f"{out} holds results of a different run (differing keys: {', '.join(diff)}; "
                    f"{details}). Choose another --out or delete the folder {out}."
                )
            rows = _read_csv(out / PREDICTIONS_FILE)
            bad = _read_csv(out / BAD_FILE)
            log.info("resuming %s: %d rows, %d bad images", out, len(rows), len(bad))
        else:
            leftovers = [n for n in (PREDICTIONS_FILE, BAD_FILE) if (out / n).exists()]
            if leftovers:
                # Results without an identity cannot be checked against this config.
                raise ValueError(
                    f"{out} has {leftovers} but no {CONFIG_FILE}; cannot tell which run they "
                    f"belong to. Choose another --out or delete the folder {out}."
                )
            _write_json(config_path, wanted)
            rows, bad = [], []
        store = cls(out, wanted, rows, bad)
        if provenance is not None:
            store._record_provenance(dict(provenance))
        return store

    def _record_provenance(self, provenance: dict[str, Any]) -> None:
        path = self.out / PROVENANCE_FILE
        record = jsonable(provenance)
        if path.exists() and (self._rows or self._bad):
            # A resumed run may continue on another machine or commit: keep every session.
            existing = json.loads(path.read_text(encoding="utf-8"))
            existing.setdefault("resumed", []).append(record)
            record = existing
        _write_json(path, record)

    @property
    def done(self) -> set[int]:
        """Indices already recorded, good or bad (skip these when resuming)."""
        return set(self._rows) | set(self._bad)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Good rows, sorted by index (copies)."""
        return [dict(self._rows[i]) for i in sorted(self._rows)]

    @property
    def bad(self) -> list[dict[str, Any]]:
        """Bad-image rows, sorted by index (copies)."""
        return [dict(self._bad[i]) for i in sorted(self._bad)]

    def append(self, rows: Sequence[Mapping[str, Any]], bad: Sequence[Mapping[str, Any]] = ()) -> None:
        """Record a batch of predictions and failures, then rewrite the CSVs atomically.

        Each call rewrites the whole file(s): O(total rows) per call, about 0.4 MB for
        ImageNet-Mini's 3,923 images, which is negligible next to a forward pass. For much
        larger sets, call less often with bigger lists.
        """
        new_rows = [_normalise_row(r, PRED_COLUMNS, "prediction") for r in rows]
        new_bad = [_normalise_row(b, BAD_COLUMNS, "bad-image") for b in bad]
        counts = Counter([r["index"] for r in new_rows] + [b["index"] for b in new_bad])
        repeated = sorted({i for i, c in counts.items() if c > 1} | (set(counts) & self.done))
        if repeated:
            raise ValueError(f"indices already recorded (or repeated in this batch): {repeated[:10]}")
        if new_rows:
            self._rows.update((r["index"], r) for r in new_rows)
            atomic_write_text(self.out / PREDICTIONS_FILE, _to_csv(self.rows, self._columns()))
        if new_bad:
            self._bad.update((b["index"], b) for b in new_bad)
            atomic_write_text(self.out / BAD_FILE, _to_csv(self.bad, BAD_COLUMNS))

    def _columns(self) -> list[str]:
        extra: dict[str, None] = {}  # ordered set: first-seen order of extra columns
        for row in self._rows.values():
            for key in row:
                if key not in PRED_COLUMNS:
                    extra[key] = None
        return [*PRED_COLUMNS, *extra]

    def summary(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Top-1/top-5 (% of good images), counts and token stats; written to summary.json."""
        good = list(self._rows.values())
        n = len(good)
        tokens = [r["tokens"] for r in good if isinstance(r.get("tokens"), (int, float))]
        summary: dict[str, Any] = {
            "n_images": n,
            "n_bad": len(self._bad),
            "top1": 100.0 * sum(r["correct1"] for r in good) / n if n else None,
            "top5": 100.0 * sum(r["correct5"] for r in good) / n if n else None,
            "tokens_mean": sum(tokens) / len(tokens) if tokens else None,
            "tokens_min": min(tokens) if tokens else None,
            "tokens_max": max(tokens) if tokens else None,
        }
        if extra:
            summary.update(jsonable(dict(extra)))
        _write_json(self.out / SUMMARY_FILE, summary)
        return summary
