"""ToMato's pipeline, written once: block-0 tokens -> group labels -> merged tokens.

``log distribution -> neighbour scores -> threshold or budget search -> directed edges ->
visit -> merge``. The patched block 0 calls :func:`merge_at_once` between its attention
and its MLP; the agreement study, the benchmark, the pictures and the notebooks call
:func:`group_tokens` (or its stages) instead of writing the chain out again.

With ``method="parallel"`` (and the default ``rule="directed"``) the chain is written for
an accelerator: its operation count does not depend on the batch size, and it makes one
host sync per forward, which reads the padded group count (the merged sequence's length,
needed to allocate it). At a fixed ``sim`` the labels come from reachability
(:func:`tomato.core.visit.reach_roots`: a fixed number of batched matrix products, exact
on any grid, with nothing to check). With a token budget,
:func:`tomato.core.budget.search_parallel` probes thresholds with a fixed number of
label-propagation rounds, then its pick and the next larger candidate are labelled
exactly by reachability; the check that the pick fits the budget and the candidate above
does not is read in the same sync. Only if that check fails does the bisection
:func:`tomato.core.budget.search_sim` run (one sync per step), so the result always
equals the faithful visit's.

With ``static=True`` (a token budget of k) the merged sequence is always ``P + k`` long:
each image's groups, then padding of size 0. Nothing is read back, so the parallel
directed chain makes no host sync at all and its shapes are fixed by the settings, as
CUDA graphs, ``torch.compile(fullgraph=True)`` and ONNX export need; the bracket check
becomes a per-image flag (``exact``) instead of a fallback.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch

from . import budget, merge, similarity, visit

__all__ = [
    "ALLOWED", "check_setting", "STATIC_NEEDS_BUDGET", "Settings", "Grouping", "Step", "neighbour_log_scores",
    "choose_log_sim", "labels_at", "group_scores", "group_tokens", "merge_at_once",
]


#: Why a static model refuses a fixed ``sim`` (said the same way by every caller).
STATIC_NEEDS_BUDGET = (
    "static mode keeps exactly k tokens per image, so it needs a token budget "
    "(tokens or keep_ratio), not a fixed sim"
)


#: What each ToMato setting accepts: the one wording the model's attributes, the variant
#: specs, the CLI and the notebooks' parameters all use for a refused value.
ALLOWED = {
    "sim": "a number >= 0 (lower merges more; inf: no merging) or None",
    "keep_ratio": "a number in (0, 1] (fraction of patch tokens to keep) or None",
    "tokens": "an int >= 1 (patch tokens to keep) or None",
    "method": f"one of {', '.join(visit.METHODS)}",
    "metric": f"one of {', '.join(similarity.METRICS)}",
    "rule": f"one of {', '.join(visit.RULES)}",
    "block": "an int >= 0 below the model's depth (the block whose attention the merge follows)",
    "static": "True or False (True: exactly the budget's k tokens per image; needs tokens or keep_ratio)",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_setting(name: str, value: Any) -> Any:
    """``value`` for ToMato setting ``name``, typed (``float`` for sim and keep_ratio,
    ``int`` for tokens and block; a bool is never a number) and checked on its own;
    ValueError ``"<name> must be <ALLOWED[name]>, got <value>"`` otherwise. The one
    validator of each setting: :meth:`Settings.validate` adds the checks of combinations."""
    ok: bool
    if name not in ALLOWED:
        raise ValueError(f"unknown ToMato setting {name!r}; the settings are {', '.join(ALLOWED)}")
    if value is None and name in ("sim", "keep_ratio", "tokens"):
        return None
    if name == "sim":
        ok = _is_number(value) and not math.isnan(value) and value >= 0
        value = float(value) if ok else value
    elif name == "keep_ratio":
        ok = _is_number(value) and 0 < value <= 1
        value = float(value) if ok else value
    elif name in ("tokens", "block"):
        ok = _is_int(value) and value >= (1 if name == "tokens" else 0)
        value = int(value) if ok else value
    elif name == "static":
        ok = isinstance(value, bool)
    else:
        choices = {"method": visit.METHODS, "metric": similarity.METRICS, "rule": visit.RULES}[name]
        ok = isinstance(value, str) and value in choices
    if not ok:
        raise ValueError(f"{name} must be {ALLOWED[name]}, got {value!r}")
    return value


@dataclass
class Settings:
    """ToMato's knobs. ``sim=None`` with no budget disables merging entirely.

    sim: threshold on the attention distribution (lower merges more; ``inf``: no merge);
    keep_ratio / tokens: a token budget that picks ``sim`` per image instead;
    method: "faithful" (the paper's visit) or "parallel" (batched, no loop per token);
    metric: "features" (reference code), "attention" (the paper's prose), or the cosine
    of the attention "keys" (ToMe's metric) or of the features ("cosine");
    rule: the parallel method's edge rule, "directed" (the faithful partition exactly)
    or the symmetrised "either" | "both";
    block: the block whose attention the merge follows (0, the paper's, by default);
    static: with a token budget of k, every image leaves the merge with exactly k tokens
    (its groups, then size-0 padding), so shapes do not depend on the photos; it always
    labels with the parallel directed chain (the faithful partition, whatever ``method``
    says), which makes no host sync at all (see :func:`merge_at_once`).
    """

    sim: float | None = None
    keep_ratio: float | None = None
    tokens: int | None = None
    method: str = "faithful"
    metric: str = "features"
    rule: str = "directed"
    block: int = 0
    static: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (:func:`check_setting`), then
        the first bad combination."""
        for f in fields(self):
            check_setting(f.name, getattr(self, f.name))
        if self.keep_ratio is not None and self.tokens is not None:
            raise ValueError("set keep_ratio or tokens, not both")
        if self.static and self.keep_ratio is None and self.tokens is None:
            raise ValueError(STATIC_NEEDS_BUDGET)

    @property
    def active(self) -> bool:
        """Whether block 0 merges at all."""
        return self.sim is not None or self.keep_ratio is not None or self.tokens is not None


@dataclass
class Grouping:
    """Group labels of the patch tokens for one batch.

    labels: (B, N) group of each patch token, groups numbered in root order;
    counts: (B,) groups per image; log_sim: (B,) natural log of the threshold used per
    image (the budget mode picks one per image; exact even where ``sim`` underflows).
    """

    labels: torch.Tensor
    counts: torch.Tensor
    log_sim: torch.Tensor
    groups: int | None = None  # ``counts.max()`` when already read on the host
    # Static mode, parallel directed: (B,) bool, whether the budget search's bracket was
    # confirmed exactly (then the grouping is the non-static mode's; see _group_fast).
    exact: torch.Tensor | None = None


@dataclass
class Step:
    """What one merge step did: the merged tokens plus per-image statistics.

    sim: (B,) threshold used per image (the budget mode picks one per image);
    log_sim: (B,) its natural log, exact even where ``sim`` underflows to 0 in float64.
    """

    merged: merge.Merged
    sim: torch.Tensor
    log_sim: torch.Tensor
    exact: torch.Tensor | None = None


def neighbour_log_scores(
    x: torch.Tensor,
    grid: Sequence[int],
    num_prefix_tokens: int,
    metric: str = "features",
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block-0 tokens -> each patch token's scores towards its four neighbours.

    x: (B, P + N, C) hidden states after the attention residual; attn: (B, H, T, T), only
    for ``metric="attention"``; keys: (B, P + N, c), only for ``metric="keys"``
    -> (B, N, 4) float64 natural-log scores, ``-inf`` off the
    grid. Threshold tests run on log-probabilities (see
    :func:`tomato.core.similarity.log_distribution`).
    """
    log_a = similarity.log_distribution(metric, x, num_prefix_tokens, attn, keys)
    return visit.neighbour_scores(log_a, grid)


def _fixed_log_sim(b: int, settings: Settings, device: torch.device) -> torch.Tensor:
    s = math.inf if settings.sim is None else float(settings.sim)
    return torch.full((b,), math.log(s) if s > 0 else -math.inf, dtype=torch.float64, device=device)


def _budget(n: int, settings: Settings) -> int | None:
    if settings.keep_ratio is None and settings.tokens is None:
        return None
    return budget.budget_tokens(n, settings.keep_ratio, settings.tokens)


def _fast(settings: Settings) -> bool:
    # Static mode promises no host sync, so it always takes the parallel directed chain:
    # the faithful visit's very partition (proved in visit.py), without its host loop.
    return settings.rule == "directed" and (settings.method == "parallel" or settings.static)


def choose_log_sim(scores: torch.Tensor, grid: Sequence[int], settings: Settings) -> torch.Tensor:
    """The threshold per image: the fixed ``sim``, or the one a token budget picks.

    scores: (B, N, 4) from :func:`neighbour_log_scores` -> (B,) float64 log threshold.
    """
    b, n, _ = scores.shape
    k = _budget(n, settings)
    if k is None:
        return _fixed_log_sim(b, settings, scores.device)
    if _fast(settings):
        return _group_fast(scores, grid, settings).log_sim
    return budget.search_sim(scores, grid, k, settings.method, settings.rule, log=True)


def labels_at(
    scores: torch.Tensor,
    grid: Sequence[int],
    log_sim: torch.Tensor,
    method: str = "faithful",
    rule: str = "directed",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group at given thresholds. scores: (B, N, 4) log scores, log_sim: (B,) or scalar
    -> labels (B, N), counts (B,)."""
    edges = visit.directed_edges(scores, log_sim, log=True)
    return visit.group(edges, grid, method, rule)


def _group_fast(
    scores: torch.Tensor, grid: Sequence[int], settings: Settings, index: visit.GridIndex | None = None
) -> Grouping:
    """The parallel directed grouping with one host sync (see the module docstring)."""
    b, n, _ = scores.shape
    gi = index if index is not None else visit.grid_index(grid, n, scores.device)
    k = _budget(n, settings)
    if k is None or n <= k:
        log_sim = _fixed_log_sim(b, settings, scores.device) if k is None else (
            torch.full((b,), math.inf, dtype=torch.float64, device=scores.device))
        edges = visit.log_edges(scores, log_sim.view(b, 1, 1)) & gi.on_grid
        labels, counts = visit.relabel_by_root(visit.reach_roots(edges, gi))
        if settings.static:  # the image already fits: n tokens, nothing to read back
            return Grouping(labels, counts, log_sim, n, exact=torch.ones_like(counts, dtype=torch.bool))
        # The forward's one host sync: the padded group count.
        return Grouping(labels, counts, log_sim, int(counts.amax()))
    rounds = budget.STATIC_PROBE_ROUNDS if settings.static else None  # static cannot fall back
    log_sim, above = budget.search_parallel(scores, gi, k, rounds)
    # One exact labelling of the pick and of the next larger candidate, as one batch:
    # the pick must fit and the one above must not (budget.search_parallel).
    both = torch.stack([log_sim, above]).view(2, b, 1, 1)
    edges = (visit.log_edges(scores.unsqueeze(0), both) & gi.on_grid).view(2 * b, n, 4)
    labels, counts = visit.relabel_by_root(visit.reach_roots(edges, gi))
    labels, counts, counts_above = labels[:b], counts[:b], counts[b:]
    if settings.static:
        # No sync: the length is k, and the pick always fits (its probe over-counted). A
        # bracket the probes missed would keep fewer tokens than the exact search; such
        # images are flagged, not fixed, since fixing them needs the host.
        return Grouping(labels, counts, log_sim, k, exact=counts_above > k)
    # The forward's one host sync: the padded group count, with the check of the bracket.
    groups, ok = torch.stack([counts.amax(), (counts_above > k).all().long()]).tolist()
    if not ok:  # the probes missed (a pathological grid): the exact search, synced per step
        log_sim = budget.search_sim(scores, grid, k, "parallel", "directed", log=True)
        edges = visit.log_edges(scores, log_sim.view(b, 1, 1)) & gi.on_grid
        labels, counts = visit.relabel_by_root(visit.reach_roots(edges, gi))
        groups = int(counts.amax())
    return Grouping(labels, counts, log_sim, groups)


def group_scores(
    scores: torch.Tensor, grid: Sequence[int], settings: Settings, index: visit.GridIndex | None = None
) -> Grouping:
    """Threshold (or budget search) then visit, from neighbour scores (B, N, 4); ``index``:
    the grid's tables when the caller built them (the parallel directed chain reuses them)."""
    if _fast(settings):
        return _group_fast(scores, grid, settings, index)
    log_sim = choose_log_sim(scores, grid, settings)
    labels, counts = labels_at(scores, grid, log_sim, settings.method, settings.rule)
    return Grouping(labels, counts, log_sim)


def group_tokens(
    x: torch.Tensor,
    settings: Settings,
    grid: Sequence[int],
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
) -> Grouping:
    """ToMato's grouping, written once: block-0 tokens -> group labels.

    log distribution -> neighbour scores -> threshold or budget search -> directed edges
    -> visit. x: (B, P + N, C); attn: (B, H, T, T) for ``metric="attention"``; keys:
    (B, P + N, c) for ``metric="keys"``.
    The patched block, the agreement study, the benchmark and the pictures all call this.
    """
    n = x.shape[1] - num_prefix_tokens
    grid = visit.grid_shape(n, grid)
    # The grid's index tables, built once for the scores, the search and the labelling.
    gi = visit.grid_index(grid, n, x.device)
    # The scores decide the groups, so they are never left to autocast's half precision:
    # a budget must be met and a threshold read the same whatever the caller runs under.
    with torch.autocast(x.device.type, enabled=False):
        log_a = similarity.log_distribution(settings.metric, x, num_prefix_tokens, attn, keys)
        return group_scores(visit.neighbour_scores(log_a, grid, gi), grid, settings, gi)


def merge_at_once(
    x: torch.Tensor,
    settings: Settings,
    grid: Sequence[int],
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
) -> Step:
    """Merge block 0's tokens once.

    x: (B, P + N, C) hidden states after the attention residual; attn: (B, H, T, T) block
    0's attention probabilities (only for ``metric="attention"``); keys: (B, P + N, c) its
    head-averaged keys (only for ``metric="keys"``). The patched model calls this after
    the attention of block ``settings.block``, whose tokens these then are.
    Returns merged tokens (B, P + G, C) with sizes, labels and counts; G is the largest
    group count of the batch, or the budget k exactly with ``settings.static``.
    """
    g = group_tokens(x, settings, grid, num_prefix_tokens, attn, keys)
    groups = g.groups
    if settings.static:  # pad every image to the budget: shapes fixed by the settings alone
        groups = _budget(x.shape[1] - num_prefix_tokens, settings)
    merged = merge.merge_groups(x, g.labels, g.counts, num_prefix_tokens, groups=groups)
    return Step(merged, g.log_sim.exp(), g.log_sim, g.exact)
