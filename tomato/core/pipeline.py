"""ToMato's merge step, read top-down: scores, threshold, edges, labels, merge.

:func:`merge_at_once` (what the patched block calls between its attention and its MLP)
goes down once::

    scores   similarity.neighbour_log_scores   (B, N, 4): one N x N product, read at the
                                                neighbours only
    sim      fixed, or per image for a budget   budget.search_sim (bisection) or
                                                budget.search_parallel (probes)
    edges    visit.log_edges                    (B, N, 4) bool, decided like the reference
    labels   visit.faithful (the paper's loop)  or label propagation (parallel)
    merge    merge.merge_groups                 (B, P + G, C) with sizes

:func:`group_tokens` stops before the merge (the agreement study and the pictures use
it); :func:`neighbour_log_scores`, :func:`choose_log_sim` and :func:`labels_at` are its
stages for the notebooks.

With ``method="parallel"`` (and the default ``rule="directed"``) the chain is written for
an accelerator: its operation count does not depend on the batch size, and it makes one
host sync per forward, which reads the padded group count (the merged sequence's length,
needed to allocate it). The labels come from a few rounds of label propagation
(:mod:`tomato.core.propagation`), whose closure flag (exact or not) is read in that same
sync; a labelling not yet closed gets more rounds. With a token budget,
:func:`tomato.core.budget.search_parallel` probes thresholds, then its pick and the next
larger candidate are labelled and checked, in the same sync, to fit and not to fit. Only
if that check fails does the bisection :func:`tomato.core.budget.search_sim` run (one
sync per step), so the result always equals the faithful visit's.

With ``static=True`` (a token budget of k) the merged sequence is always ``P + k`` long:
each image's groups, then padding of size 0. Nothing is read back, so the parallel
directed chain makes no host sync at all and its shapes are fixed by the settings, as
CUDA graphs, ``torch.compile(fullgraph=True)`` and ONNX export need; the checks become a
per-image flag (``exact``) instead of a fallback.
"""
from __future__ import annotations

import math
import numbers
import struct
from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch

from . import budget, merge, propagation, similarity, visit
from .grid import GridIndex, grid_index

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
    # confirmed exactly (then the grouping is the non-static mode's; see _bracketed).
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
    """Block-0 tokens -> each patch token's natural-log scores towards its four neighbours,
    (B, N, 4) float64, ``-inf`` off the grid (:func:`tomato.core.similarity.neighbour_log_scores`).
    x: (B, P + N, C); attn: (B, H, T, T) for ``metric="attention"``; keys: (B, P + N, c)
    for ``metric="keys"``."""
    n = x.shape[1] - num_prefix_tokens
    gi = grid_index(grid, n, x.device)
    return similarity.neighbour_log_scores(metric, x, gi, num_prefix_tokens, attn, keys)


def merge_at_once(
    x: torch.Tensor,
    settings: Settings,
    grid: Sequence[int],
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    index: GridIndex | None = None,
) -> Step:
    """Merge block 0's tokens once: scores, threshold, edges, labels, merge.

    x: (B, P + N, C) hidden states after the attention residual; attn: (B, H, T, T) block
    0's attention probabilities (only for ``metric="attention"``); keys: (B, P + N, c) its
    head-averaged keys (only for ``metric="keys"``); index: the grid's tables when the
    caller keeps them. The patched model calls this after the attention of block
    ``settings.block``, whose tokens these then are.
    Returns merged tokens (B, P + G, C) with sizes, labels and counts; G is the largest
    group count of the batch, or the budget k exactly with ``settings.static``.
    """
    g = group_tokens(x, settings, grid, num_prefix_tokens, attn, keys, index)
    merged = merge.merge_groups(x, g.labels, g.counts, num_prefix_tokens, groups=g.groups)
    return Step(merged, g.log_sim.exp(), g.log_sim, g.exact)


def group_tokens(
    x: torch.Tensor,
    settings: Settings,
    grid: Sequence[int],
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    index: GridIndex | None = None,
) -> Grouping:
    """ToMato's grouping: block-0 tokens -> group labels (the merge step without the merge;
    the agreement study and the pictures call it too). Shapes as in :func:`merge_at_once`."""
    n = x.shape[1] - num_prefix_tokens
    gi = index if index is not None else grid_index(grid, n, x.device)
    # The scores decide the groups, so they are never left to autocast's half precision:
    # a budget must be met and a threshold read the same whatever the caller runs under.
    with torch.autocast(x.device.type, enabled=False):
        s32 = _fixed_sim32(settings)
        if _budget(n, settings) is None and s32 > 0:
            # A fixed threshold float32 can hold: the test is p >= float32(sim) on the
            # float32 probabilities, with no logarithm (visit.log_edges).
            p = similarity.neighbour_log_scores(settings.metric, x, gi, num_prefix_tokens, attn, keys, logs=False)
            log_sim = _fixed_log_sim(x.shape[0], settings, x.device)
            return _labels(p.ge(s32) & gi.on_grid, gi, settings, log_sim)
        scores = similarity.neighbour_log_scores(settings.metric, x, gi, num_prefix_tokens, attn, keys)
        return group_scores(scores, grid, settings, gi)


def group_scores(
    scores: torch.Tensor, grid: Sequence[int], settings: Settings, index: GridIndex | None = None
) -> Grouping:
    """Threshold (fixed, or searched per image for a budget), edges, labels, from
    neighbour log scores (B, N, 4); ``index``: the grid's tables when the caller built them."""
    b, n, _ = scores.shape
    gi = index if index is not None else grid_index(grid, n, scores.device)
    k = _budget(n, settings)
    if k is not None and _fast(settings):
        return _bracketed(scores, gi, settings, k)
    log_sim = choose_log_sim(scores, grid, settings)
    edges = visit.log_edges(scores, log_sim.view(b, 1, 1)) & gi.on_grid
    return _labels(edges, gi, settings, log_sim)


def choose_log_sim(scores: torch.Tensor, grid: Sequence[int], settings: Settings) -> torch.Tensor:
    """The threshold per image: the fixed ``sim``, or the one a token budget picks.

    scores: (B, N, 4) from :func:`neighbour_log_scores` -> (B,) float64 log threshold.
    """
    b, n, _ = scores.shape
    k = _budget(n, settings)
    if k is None:
        return _fixed_log_sim(b, settings, scores.device)
    if _fast(settings):
        return _bracketed(scores, grid_index(grid, n, scores.device), settings, k).log_sim
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


def _fixed_log_sim(b: int, settings: Settings, device: torch.device) -> torch.Tensor:
    s = math.inf if settings.sim is None else float(settings.sim)
    return torch.full((b,), math.log(s) if s > 0 else -math.inf, dtype=torch.float64, device=device)


def _budget(n: int, settings: Settings) -> int | None:
    if settings.keep_ratio is None and settings.tokens is None:
        return None
    return budget.budget_tokens(n, settings.keep_ratio, settings.tokens)


def _fixed_sim32(settings: Settings) -> float:
    """float32(sim), the threshold the reference compares with (inf when sim is None);
    rounded on the host (struct), since a tensor here would be an operation per forward."""
    s = math.inf if settings.sim is None else float(settings.sim)
    return s if math.isinf(s) else float(struct.unpack("f", struct.pack("f", s))[0])


def _fast(settings: Settings) -> bool:
    # Static mode promises no host sync, so it always takes the parallel directed chain:
    # the faithful visit's very partition (proved in visit.py), without its host loop.
    return settings.rule == "directed" and (settings.method == "parallel" or settings.static)


# Label-propagation rounds before the closure check is read: at a fixed sim, four cheap
# rounds (propagation.listen) close 93% of the trained DeiT-Ti's labellings at the paper's
# sim (the rest are settled after the sync); after the budget search, the labels of its
# last miss are a head start for run rounds (propagation.propagate).
FIXED_ROUNDS = 4
BRACKET_ROUNDS = 2
STATIC_BRACKET_ROUNDS = 4


def _labels(edges: torch.Tensor, gi: GridIndex, settings: Settings, log_sim: torch.Tensor) -> Grouping:
    """The visit at one threshold per image: edges (B, N, 4) -> the grouping."""
    if not _fast(settings):
        labels, counts = visit.group(edges, (gi.h, gi.w), settings.method, settings.rule)
        return Grouping(labels, counts, log_sim)
    # The parallel directed chain: a few cheap rounds of label propagation (groups at a
    # fixed sim are small), then the forward's one host sync reads the padded group count
    # with the flag that the labels are closed (exact); the rare rest gets more rounds.
    lab = propagation.listen(edges, gi, FIXED_ROUNDS)
    while True:
        labels, counts = visit.relabel_by_root(lab)
        groups, ok = torch.stack([counts.amax(), propagation.closed(edges, gi, lab).all().long()]).tolist()
        if ok:
            return Grouping(labels, counts, log_sim, groups)
        # Large winding groups (a low sim, or an untrained model): rounds along whole runs.
        lab = propagation.propagate(edges, gi, propagation.ROUNDS, lab)


def _bracketed(scores: torch.Tensor, gi: GridIndex, settings: Settings, k: int) -> Grouping:
    """A token budget by the parallel directed chain: a fixed number of operations for any
    batch, one host sync (none in static mode); see the module docstring.
    scores: (B, N, 4) log scores -> the faithful visit's very grouping."""
    b, n, _ = scores.shape
    if n <= k:  # the image already fits: every token its own group
        inf = torch.full((b,), math.inf, dtype=torch.float64, device=scores.device)
        counts = torch.full((b,), n, dtype=torch.long, device=scores.device)
        exact = torch.ones_like(counts, dtype=torch.bool) if settings.static else None
        return Grouping(gi.me.expand(b, n), counts, inf, n, exact)
    rounds = budget.STATIC_PROBE_ROUNDS if settings.static else None
    log_sim, above, start = budget.search_parallel(scores, gi, k, rounds)
    # The pick and the next larger candidate, labelled as one batch from the labels of
    # the search's last miss: the pick must fit and the one above must not.
    both = torch.stack([log_sim, above]).view(2, b, 1, 1)
    edges = (visit.log_edges(scores.unsqueeze(0), both) & gi.on_grid).view(2 * b, n, 4)
    lab = propagation.propagate(edges, gi, STATIC_BRACKET_ROUNDS if settings.static else BRACKET_ROUNDS,
                                start.repeat(2, 1))
    done = propagation.closed(edges, gi, lab)
    labels, counts = visit.relabel_by_root(lab)
    exact = done[:b] & done[b:] & (counts[b:] > k)
    labels, counts = labels[:b], counts[:b]
    if settings.static:
        # No sync: the length is k. An image whose bracket is not confirmed is flagged,
        # not fixed (that needs the host); an unclosed pick can only over-count its
        # groups, so its labels are kept in range (never seen on real photos).
        return Grouping(labels.clamp_max(k - 1), counts.clamp_max(k), log_sim, k, exact)
    # The forward's one host sync: the padded group count, with the check of the bracket.
    groups, ok = torch.stack([counts.amax(), exact.all().long()]).tolist()
    if not ok:  # the probes missed (a pathological grid): the exact search, synced per step
        log_sim = budget.search_sim(scores, (gi.h, gi.w), k, "parallel", "directed", log=True)
        edges = visit.log_edges(scores, log_sim.view(b, 1, 1)) & gi.on_grid
        labels, counts = visit.relabel_by_root(propagation.min_ancestors(edges, gi))
        groups = int(counts.amax())
    return Grouping(labels, counts, log_sim, groups)
