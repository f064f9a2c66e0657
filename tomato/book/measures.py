"""Measures computed from recorded runs: the token cuts ToMato makes per image, set
against the paper's 8.16%–20.92% at sim=1e-7, and the sim that gives the paper's cut on
another model (:func:`sim_for_cut`); and :data:`EQUAL_FLOPS`, the tolerance of an
equal-FLOPs comparison.

Nothing here runs a model. pandas and numpy are imported inside functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..harness import variants
from . import paper
from .runs import RecordedRun, read_predictions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


def tokens_cut_range(predictions: Any, num_patches: int = paper.NUM_PATCHES) -> tuple[float, float, float]:
    """(min %, max %, mean %) of patch tokens removed per image: ``100 * (1 - tokens /
    num_patches)`` over the rows of ``predictions`` (a predictions.csv path, a run folder
    or a DataFrame with a ``tokens`` column). The paper's 8.16%–20.92% for sim=1e-7 is
    this (min, max)."""
    import pandas as pd

    df = predictions if isinstance(predictions, pd.DataFrame) else read_predictions(predictions)
    tokens = pd.to_numeric(df["tokens"], errors="coerce").dropna()
    if tokens.empty:
        raise ValueError("no token counts in these predictions")
    cut = 100.0 * (1.0 - tokens / float(num_patches))
    return float(cut.min()), float(cut.max()), float(cut.mean())


def sim_for_cut(runs: Sequence[RecordedRun], target: float = paper.TOKEN_CUT_MIDDLE, weights_sha256: str | None = None
                ) -> tuple[float, float, int] | None:
    """The recorded ToMato sim whose mean token cut over its photos comes nearest
    ``target`` % (default: the paper's), among the fixed-sim variants of ``runs`` (of the
    weights ``weights_sha256`` when given): (sim, mean cut %, photos); None when none is."""
    best: tuple[float, float, float, int] | None = None
    for run in runs:
        if weights_sha256 and run.provenance.get("weights_sha256") != weights_sha256:
            continue
        for spec, vr in run.variants.items():
            try:
                v = variants.parse(spec)
            except ValueError:
                continue
            if v.kind != "tomato" or [k for k, _ in v.params] != ["sim"] or not vr.has_predictions:
                continue
            preds = vr.predictions()
            mean = tokens_cut_range(preds)[2]
            if best is None or abs(mean - target) < best[0]:
                best = (abs(mean - target), float(v.get("sim")), mean, len(preds))
    return None if best is None else best[1:]


def within_paper_range(cuts: np.ndarray) -> float:
    """% of ``cuts`` (% of patch tokens removed, per image) inside the paper's range at sim=1e-7."""
    import numpy as np

    lo, hi = paper.TOKEN_CUT_SIM_1E7
    return float(100 * np.mean((cuts >= lo) & (cuts <= hi)))


def cut_summary(cuts: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per set of images (name -> % of patch tokens removed, per image): images, min %,
    median %, max % and the share of images within the paper's range at sim=1e-7 (%)."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame({k: {"images": len(v), "min %": v.min(), "median %": np.median(v), "max %": v.max(),
                             "within paper range (%)": within_paper_range(v)}
                         for k, v in cuts.items()}).T


#: Two variants are "at equal FLOPs" when their GFLOPs differ by at most this fraction
#: (the pairs of Table 1 in miniature, :func:`tomato.book.miniature.equal_flops`).
EQUAL_FLOPS = 0.05


def tally(pairs: Any) -> str:
    """Paired differences in words, from their 95% intervals (``low``, ``high``; a table or
    a list of dicts): "behind in 4 of 6 pairs, ahead in none, level within the noise in 2".
    The larger side comes first; a count of zero reads "none"."""
    rows = pairs.to_dict("records") if hasattr(pairs, "to_dict") else list(pairs)
    ahead, behind = sum(r["low"] > 0 for r in rows), sum(r["high"] < 0 for r in rows)
    level, n = len(rows) - ahead - behind, len(rows)

    def count(k: int) -> str:
        return str(k) if k else "none"

    if n and level == n:
        return f"level within the noise in {'the one pair' if n == 1 else f'all {n} pairs'}"

    first, second = (("behind", behind), ("ahead", ahead)) if behind > ahead else (("ahead", ahead), ("behind", behind))
    return (f"{first[0]} in {count(first[1])} of {n} pair{'s' if n != 1 else ''}, {second[0]} in {count(second[1])}, "
            f"level within the noise in {count(level)}")
