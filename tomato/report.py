"""Small helpers the notebooks share: honest banners and repository paths.

Nothing here computes a result; it only says where a result came from.
"""
from __future__ import annotations

from pathlib import Path

from .models import WeightsInfo


def repo_root(start: Path | str | None = None) -> Path:
    """The repository root (the folder holding ``_toc.yml``), searched upward from ``start``
    (default: the working directory), so notebooks work from ``notebooks/`` in JupyterLab
    and from the root under papermill."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file() and (d / "tomato").is_dir():
            return d
    raise FileNotFoundError(f"no repository root (a folder with _toc.yml) above {here}")


def repo_path(path: Path | str) -> Path:
    """``path`` if absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p


def weights_banner(weights: WeightsInfo) -> str:
    """Markdown stating which weights a notebook runs on; loud when they are random."""
    if weights.pretrained:
        return (f"**Weights:** `{weights.model}` from `{weights.source}` "
                f"(sha256 `{weights.sha256[:12]}…`).")
    # A plain blockquote: it renders the same in JupyterLab and in the built book.
    return (f"> **Warning: random-init weights.** `{weights.model}` runs with "
            f"`{weights.source}` because no pretrained weights can be downloaded where this "
            "page was built. Token merging, token counts, timings and pictures below are real "
            "computations on real photos, but every *accuracy* number from these weights is "
            "meaningless (chance level) and must not be read as accuracy. Rerun with "
            "`-p checkpoint /path/to/deit_base_patch16_224.pth` or on an online machine for "
            "real numbers.")
