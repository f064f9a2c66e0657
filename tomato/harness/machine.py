"""The machine a run ran on: software versions, CPU, GPU and Jetson state.

Every record's provenance (:mod:`tomato.harness.provenance`) carries :func:`machine_info`;
on a Jetson, :func:`jetson_info` adds the board, its L4T release and its power mode.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from . import ranges

__all__ = ["machine_info", "jetson_info", "NOT_A_JETSON"]

#: Value recorded for every Jetson field that could not be read, so that a record says
#: explicitly that the measurement was *not* taken on a Jetson (rather than omitting it).
NOT_A_JETSON = "absent (not a Jetson)"


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
        "nvtx_binding": ranges.find_binding().name,
        # How busy the machine was: on a shared machine this explains noisy timings.
        "load_average_1_5_15_min": list(os.getloadavg()) if hasattr(os, "getloadavg") else "unknown",
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
