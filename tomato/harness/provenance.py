"""Provenance records: which code, weights, data and machine produced a result."""
from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import math
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


from . import machine

__all__ = ["git_commit", "start", "collect", "jsonable", "state_dict_sha256"]

log = logging.getLogger(__name__)

UNKNOWN = "unknown"

# The checkout this package was imported from: provenance is about *this* code, not
# about whatever directory the user happened to launch from.
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _git(repo: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:  # git not installed, hung NFS...
        log.debug("git %s failed: %s", args, exc)
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "untracked"}`` of ``repo`` (default: this package's checkout).

    ``dirty`` reflects tracked files only; ``untracked`` counts non-ignored untracked
    files, reported separately because output folders inside a checkout are common.
    Every value is ``"unknown"`` when ``repo`` is not a git work tree or git is missing.
    """
    root = Path(repo) if repo is not None else _PACKAGE_ROOT
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return {"commit": UNKNOWN, "dirty": UNKNOWN, "untracked": UNKNOWN}
    tracked = _git(root, "status", "--porcelain", "--untracked-files=no")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard")
    return {
        "commit": head.strip(),
        "dirty": bool(tracked.strip()) if tracked is not None else UNKNOWN,
        "untracked": len(untracked.splitlines()) if untracked is not None else UNKNOWN,
    }


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (paths, devices, numpy/torch scalars -> plain)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # NaN/inf are not valid JSON; record them as strings rather than fail later.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return jsonable(value.item())
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return jsonable(item())
    return str(value)


def now() -> str:
    """The UTC date and time, to the second, as records write it."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def start() -> dict[str, Any]:
    """``{"git", "started_utc"}``: the code as a run starts, to hand to :func:`collect`
    when the record is written at the end (a commit made or a file edited meanwhile must
    not be credited with the result)."""
    return {"git": git_commit(), "started_utc": now()}


def collect(started: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """Caller ``fields`` (model, weights hash, data path, variant...) plus environment.

    Adds python/torch/timm versions, a machine summary, git commit + dirty flag, UTC ISO
    date and hostname. ``started``: a :func:`start` snapshot taken when the run began;
    its git state is recorded (with ``started_utc``) instead of the state now.
    Automatic keys win over caller keys of the same name (a warning is logged) so that a
    record cannot silently misreport its environment.
    """
    snapshot = dict(started) if started is not None else start()
    here = machine.machine_info()
    auto: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": here.get("timm", UNKNOWN),
        "gpu_name": here.get("cuda_device"),
        "cpu_model": here.get("cpu_model"),
        "machine": here,
        "git": snapshot["git"],
        "started_utc": snapshot["started_utc"],
        "date_utc": now(),
        "hostname": socket.gethostname(),
    }
    clash = sorted(set(fields) & set(auto))
    if clash:
        log.warning("provenance fields %s are collected automatically; caller values ignored", clash)
    return jsonable({**fields, **auto})


def state_dict_sha256(model_or_state_dict: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 over a state dict: for each key in sorted order, the key, dtype, shape
    and the tensor's raw bytes (``.detach().cpu().contiguous()``). Same weights -> same
    hash, whatever file or device they came from."""
    sd = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    h = hashlib.sha256()
    for key in sorted(sd):
        t = sd[key].detach().cpu().contiguous()
        # Key, dtype and shape go in too, so a reshaped or renamed tensor changes the hash.
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        # Viewing as bytes works for every dtype (bfloat16 has no numpy equivalent).
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
