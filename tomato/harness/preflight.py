"""Every command's arguments checked before any model is loaded or anything is computed or
created (:func:`preflight`): numbers out of range, ToMato settings, output paths,
checkpoint files, devices. One check per argument name, whichever command takes it; each
refusal is one ValueError that the command line prints as one ``error:`` line.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict

from ..core import pipeline
from . import models, records
from .outputs import check_output_dir, check_output_file

__all__ = ["preflight", "OUT_FOLDER", "OUT_FILE"]


def _at_least(minimum: int) -> Callable[[str, Any], None]:
    def check(flag: str, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v is not None and v < minimum]
        if bad:
            raise ValueError(f"{flag} {bad[0]}: must be an integer >= {minimum}")
    return check


def _tomato_setting(kind: str) -> Callable[[str, Any], None]:
    def check(flag: str, values: Any) -> None:
        for v in values or []:
            try:
                pipeline.Settings(**{kind: v}).validate()
            except ValueError as e:
                raise ValueError(f"{flag} {v}: {e}") from None
    return check


def _finite_positive(flag: str, value: Any) -> None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{flag} {value}: must be a finite number of seconds > 0")


#: argparse dest -> (flag, check); every command's arguments are checked by name.
_CHECKS: Dict[str, tuple] = {
    "batch_size": ("--batch-size", _at_least(1)),
    "batch_sizes": ("--batch-sizes", _at_least(1)),
    "workers": ("--workers", _at_least(0)),
    "max_batches": ("--max-batches", _at_least(1)),
    "runs": ("--runs", _at_least(1)),
    "warmup": ("--warmup", _at_least(0)),
    "threads": ("--threads", _at_least(1)),
    "images": ("--images", _at_least(1)),
    "forwards": ("--forwards", _at_least(1)),
    "limit": ("--limit", _at_least(1)),
    "tokens": ("--tokens", _at_least(1)),
    "budget_s": ("--budget-s", _finite_positive),
    "sims": ("--sims", _tomato_setting("sim")),
    "keep": ("--keep", _tomato_setting("keep_ratio")),
}

#: Commands whose --out is a run folder (resumable) or a single file written at the end.
OUT_FOLDER = {"eval", "sweep", "train", "record"}
OUT_FILE = {"time", "agree", "fidelity", "bench"}


def _out_kind(args: argparse.Namespace) -> str:
    """The record kind a file-writing command leaves at ``--out``."""
    if args.command == "bench":
        return "payoff" if args.payoff else "static" if args.static else "bench"
    return {"time": "timing", "agree": "agreement", "fidelity": "fidelity"}[args.command]


def preflight(args: argparse.Namespace) -> None:
    """Raise ValueError for a bad argument before any model is loaded or anything is
    computed or created: numbers out of range, ToMato settings, output paths, checkpoint
    files. The output checks create nothing."""
    for dest, (flag, check) in _CHECKS.items():
        if hasattr(args, dest):
            check(flag, getattr(args, dest))
    if args.command in ("agree", "fidelity") and not (args.sims or args.keep):
        raise ValueError("--sims and --keep are both empty: give at least one ToMato setting to study")
    if args.command == "record" and args.out is None:
        from .record import default_out

        args.out = default_out(args.checkpoint)
        if args.out is None:
            raise ValueError("--out: give the record folder (the default, data/results/<name>, needs --checkpoint "
                             "<name> of a model under data/weights)")
    out = getattr(args, "out", None)
    if out and args.command in OUT_FOLDER:
        check_output_dir(out)
    elif out and args.command in OUT_FILE:
        check_output_file(out)
        kind = _out_kind(args)
        if Path(out).exists() and records.read(kind, out) is None:
            raise ValueError(f"--out {out} exists and is not a {kind} record; nothing was touched: choose a new "
                             f"file name (a record of the same kind is replaced)")
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None:
        try:
            models.resolve_checkpoint(checkpoint)
        except FileNotFoundError as e:
            raise ValueError(f"--checkpoint {checkpoint}: no such file; give the path of a .pth or .safetensors "
                             f"file ({e})") from None
    if getattr(args, "model", None) is not None:
        models.check_supported(args.model)
    device = str(getattr(args, "device", "cpu"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this machine has no usable CUDA device (torch "
                             f"{torch.__version__}); use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
