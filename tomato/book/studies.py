"""Small studies of the walk-through notebooks that run ToMato's pipeline on block-0
scores: the log distribution as the merge step compares it, how many neighbour edges
pass each threshold under two metrics, the two metrics at equal token budgets, and a
summary of the faithful-vs-parallel agreement study.

Every grouping goes through :mod:`tomato.core.pipeline` (``labels_at``,
``group_scores``), the same code the patched model runs. pandas is imported inside the
functions.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..core import budget, pipeline, similarity, visit
from ..harness.agreement import adjusted_rand_index
from ..harness.variants import PAPER_SIMS

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

    from ..core.probe import Block0


def log10_distribution(b0: Block0, metric: str = "features") -> torch.Tensor:
    """log10 of the attention distribution, as the merge step compares it.

    b0: :func:`tomato.core.probe.block0` output -> (B, N, N) float64, i.e.
    :func:`tomato.core.similarity.log_distribution` / ln 10. The merge step tests thresholds
    in the log domain, so entries far below float32's smallest number (~1e-45, where the
    probabilities themselves are exactly 0) keep their true size and order.
    """
    log_a = similarity.log_distribution(metric, b0.x, b0.num_prefix_tokens, b0.attn)
    return log_a.double() / math.log(10.0)


def edge_agreement_table(
    scores: Mapping[str, torch.Tensor],
    grid: Sequence[int],
    sims: Sequence[float] = PAPER_SIMS,
) -> pd.DataFrame:
    """How many directed neighbour edges pass each threshold under two metrics, and how
    often the two metrics make the same decision.

    scores: exactly two entries, metric name -> (B, N, 4) natural-log neighbour scores
    (:func:`tomato.core.pipeline.neighbour_log_scores`). One row per distinct sim,
    indexed by ``f"{sim:.3g}"``: % of edges passing under each metric, % of edges where
    both metrics decide alike, the Jaccard overlap of the passing edge sets, and the mean
    patch tokens the faithful visit keeps under each.
    """
    import pandas as pd

    (na, sa), (nb, sb) = scores.items()
    valid = torch.isfinite(sa) & torch.isfinite(sb)
    rows = []
    for sim in dict.fromkeys(float(s) for s in sims):  # a repeated sim would repeat its row
        log_sim = torch.tensor(math.log(sim) if sim > 0 else -math.inf, dtype=torch.float64)
        pa = visit.directed_edges(sa, log_sim, log=True)[valid]
        pb = visit.directed_edges(sb, log_sim, log=True)[valid]
        union = int((pa | pb).sum())
        rows.append({
            "sim": f"{sim:.3g}",
            f"edges passing, {na} (%)": 100 * float(pa.double().mean()),
            f"edges passing, {nb} (%)": 100 * float(pb.double().mean()),
            "same decision (%)": 100 * float((pa == pb).double().mean()),
            "Jaccard of passing edges": float((pa & pb).sum()) / union if union else float("nan"),
            f"tokens kept, {na}": float(pipeline.labels_at(sa, grid, log_sim)[1].double().mean()),
            f"tokens kept, {nb}": float(pipeline.labels_at(sb, grid, log_sim)[1].double().mean()),
        })
    return pd.DataFrame(rows).set_index("sim")


def metric_budget_agreement(
    scores: Mapping[str, torch.Tensor],
    grid: Sequence[int],
    keep_ratios: Sequence[float] = (0.9, 0.75, 0.5),
) -> pd.DataFrame:
    """Compare two metrics at equal token budgets instead of equal thresholds.

    scores: exactly two entries, metric name -> (B, N, 4) natural-log neighbour scores.
    For each keep ratio, each metric's ``sim`` is chosen per image by the budget search
    (faithful visit); one row per keep ratio with the mean tokens kept under each metric,
    the mean adjusted Rand index of the two partitions, and the % of images where they
    are identical.
    """
    import pandas as pd

    (na, sa), (nb, sb) = scores.items()
    rows = []
    for rho in dict.fromkeys(float(k) for k in keep_ratios):
        settings = pipeline.Settings(keep_ratio=rho)
        ga, gb = (pipeline.group_scores(s.double(), grid, settings) for s in (sa, sb))
        la, lb = ga.labels.cpu(), gb.labels.cpu()
        rows.append({
            "keep ratio": f"{rho:g}",
            "budget (tokens)": budget.budget_tokens(sa.shape[1], keep_ratio=rho),
            f"tokens kept, {na}": float(ga.counts.double().mean()),
            f"tokens kept, {nb}": float(gb.counts.double().mean()),
            "ARI between the metrics": float(np.mean([adjusted_rand_index(a, b) for a, b in zip(la, lb)])),
            "identical partitions (% images)": 100 * float(np.mean([bool(torch.equal(a, b)) for a, b in zip(la, lb)])),
        })
    return pd.DataFrame(rows).set_index("keep ratio")


def agreement_summary(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Summarise :func:`tomato.harness.agreement.method_agreement` rows, one line per setting.

    Columns: images; mean patch tokens kept by the faithful visit and the "either" /
    "both" rules; % of images where parallel "directed" equals faithful exactly; mean
    adjusted Rand index and mean share of faithful groups found unchanged, per rule.
    """
    import pandas as pd

    df = pd.DataFrame(list(rows))
    # A rule reproduces the faithful partition when every faithful group is found as is.
    df["either_same"] = df["identical_either"] == 1.0
    df["both_same"] = df["identical_both"] == 1.0
    g = df.groupby("setting", sort=False)
    out = pd.DataFrame({
        "images": g.size(),
        "tokens faithful": g["tokens_faithful"].mean(),
        "tokens either": g["tokens_either"].mean(),
        "tokens both": g["tokens_both"].mean(),
        "directed == faithful (% images)": 100 * g["same_directed"].mean(),
        "ARI either": g["ari_either"].mean(),
        "ARI both": g["ari_both"].mean(),
        "groups unchanged, either (%)": 100 * g["identical_either"].mean(),
        "groups unchanged, both (%)": 100 * g["identical_both"].mean(),
        "either == faithful (% images)": 100 * g["either_same"].mean(),
        "both == faithful (% images)": 100 * g["both_same"].mean(),
    })
    return out

