"""ToMato's merge step end to end: similarity -> visit -> merge, for one batch of tokens.

This is what the patched block 0 calls between its attention and its MLP; notebooks call
it directly to show each stage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from . import budget, merge, similarity, visit


@dataclass
class Settings:
    """ToMato's knobs. ``sim=None`` with no budget disables merging entirely.

    sim: threshold on the attention distribution (lower merges more; ``inf``: no merge);
    keep_ratio / tokens: a token budget that picks ``sim`` per image instead;
    method: "faithful" (the paper's visit) or "parallel" (batched, no loop per token);
    metric: "features" (reference code) or "attention" (the paper's prose);
    rule: the parallel method's edge rule, "directed" (the faithful partition exactly)
    or the symmetrised "either" | "both".
    """

    sim: float | None = None
    keep_ratio: float | None = None
    tokens: int | None = None
    method: str = "faithful"
    metric: str = "features"
    rule: str = "directed"

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.sim is not None:
            if isinstance(self.sim, bool) or not isinstance(self.sim, (int, float)):
                raise ValueError(f"sim must be a number >= 0, got {self.sim!r}")
            visit.check_sim(self.sim)
        if self.keep_ratio is not None and self.tokens is not None:
            raise ValueError("set keep_ratio or tokens, not both")
        if self.keep_ratio is not None or self.tokens is not None:
            budget.budget_tokens(10**6, self.keep_ratio, self.tokens)
        if self.method not in visit.METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {visit.METHODS}")
        if self.metric not in similarity.METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose one of {similarity.METRICS}")
        if self.rule not in visit.RULES:
            raise ValueError(f"unknown edge rule {self.rule!r}; choose one of {visit.RULES}")

    @property
    def active(self) -> bool:
        """Whether block 0 merges at all."""
        return self.sim is not None or self.keep_ratio is not None or self.tokens is not None


@dataclass
class Step:
    """What one merge step did: the merged tokens plus per-image statistics.

    sim: (B,) threshold used per image (the budget mode picks one per image);
    log_sim: (B,) its natural log, exact even where ``sim`` underflows to 0 in float64.
    """

    merged: merge.Merged
    sim: torch.Tensor
    log_sim: torch.Tensor


def merge_at_once(
    x: torch.Tensor,
    settings: Settings,
    grid: Sequence[int],
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
) -> Step:
    """Merge block 0's tokens once.

    x: (B, P + N, C) hidden states after the attention residual; attn: (B, H, T, T) block
    0's attention probabilities (only for ``metric="attention"``).
    Returns merged tokens (B, P + G, C) with sizes, labels and counts.
    """
    b = x.shape[0]
    n = x.shape[1] - num_prefix_tokens
    grid = visit.grid_shape(n, grid)
    # Threshold tests run on log-probabilities (see similarity.log_distribution).
    scores = visit.neighbour_scores(similarity.log_distribution(settings.metric, x, num_prefix_tokens, attn), grid)
    scores = scores.double()  # thresholds are float64; compare at that precision
    if settings.keep_ratio is not None or settings.tokens is not None:
        k = budget.budget_tokens(n, settings.keep_ratio, settings.tokens)
        log_sim = budget.search_sim(scores, grid, k, settings.method, settings.rule, log=True)
    else:
        s = math.inf if settings.sim is None else float(settings.sim)
        log_sim = torch.full((b,), s, dtype=torch.float64, device=x.device).log()
    edges = visit.directed_edges(scores, log_sim, log=True)
    labels, counts = visit.group(edges, grid, settings.method, settings.rule)
    return Step(merge.merge_groups(x, labels, counts, num_prefix_tokens), log_sim.exp(), log_sim)
