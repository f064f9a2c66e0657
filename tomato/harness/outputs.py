"""Output paths checked before any compute: a run must not fail after the work is done.

Both checks create nothing: a refused command leaves no folder behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["check_output_dir", "check_output_file", "claim_file"]


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def _probe_writable(directory: Path, what: str) -> None:
    # os.access says yes to root on a read-only mount; creating a file is the real test.
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".tomato-write-test.")
    except OSError as e:
        raise ValueError(
            f"{what}: cannot write in {directory} ({type(e).__name__}: {e.strerror or e}); "
            f"choose a writable location or fix its permissions"
        ) from None
    os.close(fd)
    os.unlink(name)


def check_output_dir(out: Path | str, what: str = "--out") -> Path:
    """Check, before any compute, that a run folder can be created or resumed at ``out``.

    Raises ValueError naming the path when it is an existing file or not writable (its
    nearest existing ancestor is probed with a temporary file). Creates nothing.
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{what} {out} is an existing file, not a folder; choose a folder path "
                         f"(a new one is created) or remove the file")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise ValueError(f"{what} {out}: {base} is a file, so the folder cannot be created; choose another path")
    _probe_writable(base, f"{what} {out}")
    return out


def check_output_file(out: Path | str, what: str = "--out") -> Path:
    """Check, before any compute, that ``out`` can be written as a file (e.g. a JSON record).

    Raises ValueError naming the path when it is an existing folder, when a parent is a
    file, or when the location is not writable. Creates nothing.
    """
    out = Path(out).expanduser()
    if out.is_dir():
        raise ValueError(f"{what} {out} is an existing folder; give a file name, e.g. {out / 'result.json'}")
    base = _nearest_existing(out.parent)
    if not base.is_dir():
        raise ValueError(f"{what} {out}: {base} is a file, so the folder cannot be created; choose another path")
    _probe_writable(base, f"{what} {out}")
    return out


def claim_file(out: Path | str) -> Callable[[], None]:
    """Take the lock of the record file ``out`` (``.<name>.lock`` beside it) without waiting;
    ValueError when another process holds it. Returns the function that releases it."""
    from filelock import FileLock, Timeout

    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f".{out.name}.lock"
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(f"--out {out} is being written by another run (its lock {path} is held); wait for it "
                         f"to finish, or choose another --out") from None

    def release() -> None:
        lock.release()
        path.unlink(missing_ok=True)
    return release
