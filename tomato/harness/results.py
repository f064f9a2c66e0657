"""Evaluation results on disk: resumable, written atomically, never mixing two runs.

A run folder holds::

    config.json        the run's identity (model, weights hash, variant, data, batch...)
    provenance.json    where/when/with which code it ran (resumed sessions appended)
    predictions.csv    one row per image (see PRED_COLUMNS, plus any extra columns)
    bad_images.csv     images that could not be processed (index, path, kind, error)
    summary.json       top-1/top-5 and token statistics
    .lock              held while a process writes the folder (one owner at a time)

Every file is replaced atomically, so killing the process at any moment leaves either
the previous or the new version of each file, never a torn one. Re-opening the folder
with the *same* config resumes (``done`` tells which indices to skip); a different
config is refused, because silently appending results of another model or threshold to
an old run is the easiest way to publish a wrong number.

One process owns a folder at a time: :meth:`RunStore.open` takes an OS file lock
(``filelock``; released by the kernel even on SIGKILL) *before* it reads or writes
config.json, so two runs started at once cannot both pass the identity check. A bad
image of kind ``"transient"`` (the file could not be read *now*: permissions, I/O) is
not final: it is retried on resume and the run is not complete while one stands; kind
``"corrupt"`` (the bytes do not decode) is final.
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

from filelock import FileLock, Timeout

from .outputs import check_output_dir, check_output_file
from .provenance import jsonable

__all__ = [
    "atomic_write_text",
    "release_refused",
    "check_output_dir",
    "check_output_file",
    "RunFolderBusy",
    "RunStore",
    "CORRUPT",
    "TRANSIENT",
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
LOCK_FILE = ".lock"

#: Kinds of bad image: the bytes do not decode (final) / the file could not be read now
#: (permissions, I/O error, vanished file: retried on resume).
CORRUPT = "corrupt"
TRANSIENT = "transient"

#: Fixed leading columns of predictions.csv; rows may carry extra columns after these.
PRED_COLUMNS: tuple[str, ...] = ("index", "path", "label", "top5", "correct1", "correct5", "tokens")
BAD_COLUMNS: tuple[str, ...] = ("index", "path", "kind", "error")
# tokens: unknown for a model without a token counter; kind: absent in files written
# before kinds existed (read as corrupt, the only kind there was).
_OPTIONAL = frozenset({"tokens", "kind"})
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
    if column in ("path", "error", "kind"):
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


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


def _is_final(bad: Mapping[str, Any]) -> bool:
    return bad.get("kind") != TRANSIENT


class RunStore:
    """One evaluation run's folder, owned by this process until :meth:`close`.

    Create it with :meth:`RunStore.open`; use it as a context manager (or call
    :meth:`close`) so the lock is released as soon as the run stops.
    """

    def __init__(
        self,
        out: Path,
        config: dict[str, Any],
        rows: Iterable[dict[str, Any]] = (),
        bad: Iterable[dict[str, Any]] = (),
        lock: FileLock | None = None,
    ) -> None:
        self.out = Path(out)
        self.config = config
        self._rows: dict[int, dict[str, Any]] = {r["index"]: r for r in rows}
        self._bad: dict[int, dict[str, Any]] = {b["index"]: b for b in bad}
        self._lock = lock

    @staticmethod
    def lock(out: Path) -> FileLock:
        """Take ``out``'s lock without waiting; RunFolderBusy when another process has it."""
        lock = FileLock(str(out / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunFolderBusy(
                f"{out} is in use by another run (its lock {out / LOCK_FILE} is held); wait for "
                f"that run to finish, then rerun this command, or choose another --out"
            ) from None
        return lock

    @classmethod
    def open(
        cls,
        out: Path | str,
        config: Mapping[str, Any],
        provenance: Mapping[str, Any] | None = None,
    ) -> RunStore:
        """Lock ``out``, then create it or resume it.

        Refuses with ``ValueError`` if it holds another config, ``RunFolderBusy`` if
        another process owns it. A folder this call created is removed again when the
        open fails, so a refused run leaves nothing behind.
        """
        fresh_lock = not (Path(out).expanduser() / LOCK_FILE).exists()
        out, created, lock = claim_folder(out)
        try:
            store = cls._open_locked(out, _normalise_config(config), lock)
            if provenance is not None:
                store.record_provenance(provenance)
        except BaseException:
            release_refused(out, created, lock, fresh_lock)
            raise
        return store

    @classmethod
    def _open_locked(cls, out: Path, wanted: dict[str, Any], lock: FileLock) -> RunStore:
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
            leftovers = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
            if leftovers:
                # Results without an identity cannot be checked against this config, and
                # files of someone else's must not be replaced or mixed with ours.
                more = f" and {len(leftovers) - 5} more" if len(leftovers) > 5 else ""
                raise ValueError(
                    f"{out} holds {', '.join(leftovers[:5])}{more} but no {CONFIG_FILE}: it is not a run "
                    f"folder of ours, and nothing in it is touched. Choose a new or empty --out."
                )
            _write_json(config_path, wanted)
            rows, bad = [], []
        return cls(out, wanted, rows, bad, lock)

    def close(self) -> None:
        """Release the folder's lock (idempotent); the files stay as they are."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finished_summary(self, n_images: int) -> dict[str, Any] | None:
        """The stored summary of a run that has every one of ``n_images`` done, no image
        left to retry and a summary written; None while there is work left."""
        path = self.out / SUMMARY_FILE
        if not self.complete(n_images) or self.retry or not path.is_file():
            return None
        summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        summary["complete"] = True
        return summary

    def record_provenance(self, provenance: Mapping[str, Any]) -> None:
        """Write this session's provenance (a resumed run appends it to the earlier ones)."""
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
        """Indices finished for good: predictions and corrupt images (skip these when
        resuming). Transient failures are not done: a resume retries them."""
        return set(self._rows) | {i for i, b in self._bad.items() if _is_final(b)}

    @property
    def retry(self) -> set[int]:
        """Indices whose file could not be read last time (transient): retried on resume."""
        return {i for i, b in self._bad.items() if not _is_final(b)}

    def complete(self, n_images: int) -> bool:
        """Whether every one of ``n_images`` indices is done (no transient failure left)."""
        return len(self.done) == n_images

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Good rows, sorted by index (copies)."""
        return [dict(self._rows[i]) for i in sorted(self._rows)]

    @property
    def bad(self) -> list[dict[str, Any]]:
        """Bad-image rows (corrupt and transient), sorted by index (copies)."""
        return [dict(self._bad[i]) for i in sorted(self._bad)]

    def append(self, rows: Sequence[Mapping[str, Any]], bad: Sequence[Mapping[str, Any]] = ()) -> None:
        """Record a batch of predictions and failures, then rewrite the CSVs atomically.

        A bad row without ``kind`` is corrupt. An index recorded earlier as transient
        may be recorded again (the retry's outcome replaces it); any other index already
        done is refused. Each call rewrites the whole file(s): O(total rows) per call,
        about 0.4 MB for ImageNet-Mini's 3,923 images, negligible next to a forward pass.
        """
        new_rows = [_normalise_row(r, PRED_COLUMNS, "prediction") for r in rows]
        new_bad = [_normalise_row({"kind": CORRUPT, **b}, BAD_COLUMNS, "bad-image") for b in bad]
        unknown = sorted({str(b["kind"]) for b in new_bad} - {CORRUPT, TRANSIENT})
        if unknown:
            raise ValueError(f"bad-image kind must be {CORRUPT!r} or {TRANSIENT!r}, got {unknown}")
        counts = Counter([r["index"] for r in new_rows] + [b["index"] for b in new_bad])
        repeated = sorted({i for i, c in counts.items() if c > 1} | (set(counts) & self.done))
        if repeated:
            raise ValueError(f"indices already recorded (or repeated in this batch): {repeated[:10]}")
        retried = set(counts) & self.retry
        for i in retried:
            del self._bad[i]
        if new_rows:
            self._rows.update((r["index"], r) for r in new_rows)
            atomic_write_text(self.out / PREDICTIONS_FILE, _to_csv(self.rows, self._columns()))
        if new_bad or retried:
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
        """Top-1/top-5 (% of good images), counts and token stats; written to summary.json.

        ``n_bad`` counts corrupt images (final); ``n_retry`` those that could not be read
        now and are retried on resume.
        """
        good = list(self._rows.values())
        n = len(good)
        tokens = [r["tokens"] for r in good if isinstance(r.get("tokens"), (int, float))]
        summary: dict[str, Any] = {
            "n_images": n,
            "n_bad": sum(_is_final(b) for b in self._bad.values()),
            "n_retry": len(self.retry),
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


def claim_folder(out: Path | str) -> tuple[Path, bool, FileLock]:
    """Check ``out``, create it if needed and take its lock (one owner per run folder).

    Returns ``(out, created, lock)``; a folder this call created is removed again when the
    lock is refused (``RunFolderBusy``), so a refused run leaves nothing behind.
    """
    out = check_output_dir(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return out, created, RunStore.lock(out)
    except BaseException:
        remove_if_created(out, created)
        raise


def release_refused(out: Path, created: bool, lock: FileLock, fresh_lock: bool) -> None:
    """Undo a refused claim: release the lock, remove a lock file this claim added, and the
    folder too if this claim made it, so a refused run leaves the folder as it found it."""
    lock.release()
    if fresh_lock and not created:
        (out / LOCK_FILE).unlink(missing_ok=True)
    remove_if_created(out, created)


def remove_if_created(out: Path, created: bool) -> None:
    """Undo a mkdir: remove ``out`` if ``created`` (made by this call) and it holds
    nothing but the lock file, so a refused or failed run leaves no empty folder."""
    if not created:
        return
    try:
        if {p.name for p in out.iterdir()} - {LOCK_FILE}:
            return  # results were written: this is a run now, not an orphan
        (out / LOCK_FILE).unlink(missing_ok=True)
        out.rmdir()
    except OSError:  # someone else wrote into it meanwhile: leave it alone
        pass
