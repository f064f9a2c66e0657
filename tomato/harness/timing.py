"""Latency measurement: a robust protocol, the paper's protocol, and machine records.

Two protocols live here on purpose:

* :func:`measure` / :func:`compare` -- our protocol: warm-up runs that are not timed,
  then many individually timed runs summarised by median and IQR (robust to the
  occasional scheduler hiccup), with variants interleaved round-robin so that drift on a
  shared machine (thermal throttling, a neighbour's job) hits every variant alike.
* :func:`paper_protocol` -- what the ToMato paper reports: no warm-up, the mean of
  10 inferences at batch size 1, measured with Nsight Systems on a Jetson Nano. It is
  kept so that our numbers can be put next to the paper's like for like.

GPU work is asynchronous, so each timed region is bracketed by a ``sync`` callable
(see :func:`device_sync`); without it one would time the kernel launches only.

To see the same runs in Nsight Systems (the paper's tool), wrap regions in
:func:`nvtx_range` and run, for example::

    nsys profile -t cuda,nvtx -o tomato_%p python -m tomato time \\
        --model deit_base_patch16_224 --variants deit tome:r=2 tomato:sim=1e-7
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "TimingStats",
    "measure",
    "paper_protocol",
    "device_sync",
    "compare",
    "ratios",
    "nvtx_range",
    "jetson_info",
    "machine_info",
    "NOT_A_JETSON",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sync = Callable[[], None]

#: Value recorded for every Jetson field that could not be read, so that a record says
#: explicitly that the measurement was *not* taken on a Jetson (rather than omitting it).
NOT_A_JETSON = "absent (not a Jetson)"


@dataclass
class TimingStats:
    """Individually timed runs (seconds) and robust summaries of them."""

    times: list[float] = field(default_factory=list)

    def _array(self) -> np.ndarray:
        if not self.times:
            raise ValueError("TimingStats has no times to summarise")
        return np.asarray(self.times, dtype=np.float64)

    def _pct(self, q: float) -> float:
        # "linear" is numpy's default; named explicitly so the definition is pinned.
        return float(np.percentile(self._array(), q, method="linear"))

    @property
    def n(self) -> int:
        """Number of timed runs."""
        return len(self.times)

    @property
    def median(self) -> float:
        """Median run time."""
        return self._pct(50)

    @property
    def mean(self) -> float:
        """Mean run time (what the paper reports; sensitive to outliers)."""
        return float(self._array().mean())

    @property
    def q1(self) -> float:
        """First quartile (25th percentile, linear interpolation)."""
        return self._pct(25)

    @property
    def q3(self) -> float:
        """Third quartile (75th percentile, linear interpolation)."""
        return self._pct(75)

    @property
    def iqr(self) -> float:
        """Interquartile range ``q3 - q1``."""
        return self.q3 - self.q1

    @property
    def min(self) -> float:
        """Fastest run (a lower bound on the achievable latency)."""
        return float(self._array().min())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary including the raw times."""
        return {
            "n": self.n,
            "median": self.median,
            "mean": self.mean,
            "q1": self.q1,
            "q3": self.q3,
            "iqr": self.iqr,
            "min": self.min,
            "times": [float(t) for t in self.times],
        }


def _noop() -> None:
    return None


def _timed_call(fn: Callable[[], object], clock: Clock, sync: Sync) -> float:
    # Sync before starting the clock so queued work from earlier calls is not billed to
    # this one, and after fn so its asynchronous kernels are.
    sync()
    t0 = clock()
    fn()
    sync()
    t1 = clock()
    return t1 - t0


def measure(
    fn: Callable[[], object],
    *,
    runs: int = 30,
    warmup: int = 5,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
) -> TimingStats:
    """Call ``fn`` ``warmup`` times untimed, then time ``runs`` calls one by one."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    sync = sync or _noop
    for _ in range(warmup):
        fn()
    sync()
    return TimingStats([_timed_call(fn, clock, sync) for _ in range(runs)])


def paper_protocol(
    fn: Callable[[], object],
    *,
    n: int = 10,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
) -> float:
    """The paper's latency: mean of ``n`` (=10) inferences with no warm-up.

    The paper measured this with Nsight Systems on a Jetson Nano at batch size 1; the
    first (cold) calls are included, which inflates the mean compared with
    :func:`measure`'s median after warm-up.
    """
    return measure(fn, runs=n, warmup=0, clock=clock, sync=sync).mean


def device_sync(device: torch.device | str | None) -> Sync:
    """A callable that waits for queued work on ``device`` (no-op where not needed)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return lambda: torch.cuda.synchronize(dev)
    mps = getattr(torch, "mps", None)
    if dev.type == "mps" and mps is not None and hasattr(mps, "synchronize"):
        return mps.synchronize
    # CPU ops run synchronously, so there is nothing to wait for.
    return _noop


def compare(
    fns: Mapping[str, Callable[[], object]],
    *,
    runs: int = 30,
    warmup: int = 5,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
    interleave: bool = True,
) -> dict[str, TimingStats]:
    """Time several variants in one run; by default round-robin (run i of all, then i+1).

    Interleaving makes slow drift (thermal throttling, other jobs on a shared machine)
    affect all variants alike, so their *ratios* stay meaningful even when absolute times
    move. With ``interleave=False`` each variant is measured to completion in turn.
    """
    if not fns:
        raise ValueError("compare() needs at least one variant")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    sync = sync or _noop
    if not interleave:
        return {
            name: measure(fn, runs=runs, warmup=warmup, clock=clock, sync=sync)
            for name, fn in fns.items()
        }
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(_timed_call(fn, clock, sync))
    return {name: TimingStats(t) for name, t in times.items()}


def ratios(stats: Mapping[str, TimingStats], baseline: str) -> dict[str, float]:
    """Median time of each variant divided by the baseline's median (<1 is faster)."""
    if baseline not in stats:
        raise KeyError(f"baseline {baseline!r} not among variants {sorted(stats)}")
    base = stats[baseline].median
    return {name: s.median / base for name, s in stats.items()}


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """Mark a region for Nsight Systems when CUDA is available; otherwise do nothing."""
    pushed = False
    if torch.cuda.is_available():
        try:
            torch.cuda.nvtx.range_push(name)
            pushed = True
        except (RuntimeError, AttributeError) as exc:  # torch built without NVTX
            log.debug("NVTX unavailable: %s", exc)
    try:
        yield
    finally:
        if pushed:
            torch.cuda.nvtx.range_pop()


def _read_text(path: Path) -> str | None:
    try:
        # The device-tree model string is NUL-terminated.
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _parse_l4t(release: str) -> str | None:
    """'# R32 (release), REVISION: 7.1, ...' -> 'R32.7.1' (the L4T version)."""
    first = release.splitlines()[0] if release else ""
    major = None
    revision = None
    for part in first.lstrip("# ").split(","):
        part = part.strip()
        if part.startswith("R") and "(release)" in part:
            major = part.split()[0]
        elif part.upper().startswith("REVISION:"):
            revision = part.split(":", 1)[1].strip()
    if major and revision:
        return f"{major}.{revision}"
    return None


def jetson_info(
    *,
    model_path: Path = Path("/proc/device-tree/model"),
    release_path: Path = Path("/etc/nv_tegra_release"),
    nvpmodel: str = "nvpmodel",
    timeout: float = 5.0,
) -> dict[str, str]:
    """Jetson board model, L4T release and power mode; each missing one marked absent.

    JetPack is a bundle versioned separately from L4T; the file only gives L4T (e.g.
    R32.7.x is JetPack 4.6.x on the Nano), so that is what is recorded.
    Paths and the command are parameters so tests can point them at fixtures.
    """
    info: dict[str, str] = {}
    model = _read_text(model_path)
    info["board_model"] = model if model else NOT_A_JETSON
    release = _read_text(release_path)
    if release:
        info["l4t_release"] = _parse_l4t(release) or release.splitlines()[0]
        info["l4t_release_raw"] = release.splitlines()[0]
    else:
        info["l4t_release"] = NOT_A_JETSON
        info["l4t_release_raw"] = NOT_A_JETSON
    try:
        proc = subprocess.run(
            [nvpmodel, "-q"], capture_output=True, text=True, timeout=timeout, check=False
        )
        out = " | ".join(line.strip() for line in proc.stdout.splitlines() if line.strip())
        if proc.returncode == 0 and out:
            info["power_mode"] = out
        else:
            info["power_mode"] = f"unknown (nvpmodel exit {proc.returncode})"
    except FileNotFoundError:
        info["power_mode"] = "absent (no nvpmodel; not a Jetson)"
    except (subprocess.TimeoutExpired, OSError) as exc:
        info["power_mode"] = f"unknown ({type(exc).__name__})"
    return info


def _cpu_model() -> str:
    cpuinfo = _read_text(Path("/proc/cpuinfo")) or ""
    # x86 has 'model name'; ARM kernels (Jetson) may only have 'Hardware'/'Processor'.
    for key in ("model name", "Hardware", "Processor"):
        for line in cpuinfo.splitlines():
            if line.split(":", 1)[0].strip() == key and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value:
                    return value
    return platform.processor() or platform.machine() or "unknown"


def _timm_version() -> str:
    try:
        import timm
    except ImportError:
        return "absent"
    return str(getattr(timm, "__version__", "unknown"))


def machine_info() -> dict[str, Any]:
    """What a timing is worth nothing without: software versions, CPU, GPU, Jetson state."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": _timm_version(),
    }
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(
            cuda_device=props.name,
            cuda_capability=f"{props.major}.{props.minor}",
            cuda_memory_gib=round(props.total_memory / 2**30, 2),
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
        )
    else:
        info["cuda_device"] = "none (CUDA not available)"
    info.update(jetson_info())
    return info
