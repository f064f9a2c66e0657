"""The "attention distribution" that ToMato thresholds.

Two named metrics, both giving a row-stochastic ``(B, N, N)`` matrix over the N patch
tokens of block 0 (class/distillation/register tokens set aside):

``features`` (the reference code's behaviour, our default)
    ``softmax(x @ x.T)`` over the block-0 hidden states *after* the attention residual.
    Raw dot products, no scaling: with 768-d features the rows are extremely peaked,
    which is why the paper uses thresholds as small as ``sim = 1e-7``.

``attention`` (what the paper's prose describes)
    The block's own attention probabilities, averaged over heads, restricted to
    patch-to-patch entries and renormalised so that each row is again a distribution.

Neither is symmetric: ``A[i, j] != A[j, i]`` in general, which is why the faithful visit
tests the *directed* edge ``A[i, j] >= sim`` (see :mod:`tomato.core.visit`).

Two cosine metrics, beyond the paper, to ask whether the distribution is the right score:

``keys`` (ToMe's metric, Bolya et al., ICLR 2023)
    The cosine similarity of the block's attention keys, averaged over heads.

``cosine``
    The cosine similarity of the hidden states themselves.

A cosine ``c`` in [-1, 1] is thresholded as the score ``(1 + c) / 2`` in [0, 1], so that
``sim`` keeps its meaning (an edge where the score is ``>= sim``, lower merges more) and
every threshold, budget search and visit runs unchanged. These scores are symmetric.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

from .grid import GridIndex

__all__ = [
    "METRICS", "feature_distribution", "attention_distribution", "cosine_score", "reference_logs",
    "neighbour_log_scores", "log_distribution", "distribution",
]

Metric = Literal["features", "attention", "keys", "cosine"]
METRICS: tuple[str, ...] = ("features", "attention", "keys", "cosine")


def feature_distribution(x: torch.Tensor) -> torch.Tensor:
    """Row-softmax of raw dot products, as in the reference code.

    x: (B, N, C) patch features -> (B, N, N), each row sums to 1.
    Computed in float32 even for half-precision models: the rows are so peaked that
    fp16 would round most entries to exactly 0 and change which edges pass ``sim``.
    """
    x = x.float()
    return torch.softmax(x @ x.transpose(-1, -2), dim=-1)


def attention_distribution(attn: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Head-averaged attention among patch tokens, rows renormalised.

    attn: (B, H, T, T) attention probabilities of block 0, T = prefix + N
    -> (B, N, N), each row sums to 1.
    """
    p = num_prefix_tokens
    a = attn[:, :, p:, p:].float().mean(dim=1)
    # Renormalise: the mass a patch gives to the class token is not a neighbour score.
    return a / a.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def cosine_score(f: torch.Tensor) -> torch.Tensor:
    """The cosine metrics' score ``(1 + cos) / 2`` between all pairs of rows.

    f: (B, N, c) patch features or keys -> (B, N, N) float64 in [0, 1], 1 on the diagonal.
    """
    u = torch.nn.functional.normalize(f.double(), dim=-1)
    return ((1 + u @ u.transpose(-1, -2)) / 2).clamp(0, 1)


# log(2**-150): half the smallest positive float32. A probability that float32 rounds to 0
# is given a log below this, so that float32(exp(log p)) is 0 again and every such entry
# sorts below every probability the reference code can tell from 0.
_LOG_UNDERFLOW = -150 * math.log(2.0)
# torch.nextafter rather than math.nextafter, which needs Python 3.9 (JetPack 5 has 3.8).
_BELOW_UNDERFLOW = float(torch.nextafter(torch.tensor(_LOG_UNDERFLOW, dtype=torch.float64),
                                         torch.tensor(-math.inf, dtype=torch.float64)))


def reference_logs(p: torch.Tensor, log_p: torch.Tensor | None = None) -> torch.Tensor:
    """Natural logs of float32 probabilities that keep the reference code's decisions.

    p: (...) float32 probabilities as the reference computes them; log_p: (...) their
    log-probabilities from higher-precision arithmetic, or None -> (...) float64.
    Where ``p > 0`` the result is ``log(p)`` in float64, from which ``float32(exp(.))``
    gives ``p`` back exactly (:func:`tomato.core.visit.log_edges` relies on that). Where
    float32 underflowed to 0 it is ``log_p`` (capped below log 2**-150), which keeps an
    order among entries the reference cannot tell apart; without ``log_p`` they tie there.
    """
    under = torch.full_like(p, _BELOW_UNDERFLOW, dtype=torch.float64) if log_p is None else (
        log_p.double().clamp_max(_BELOW_UNDERFLOW))
    return torch.where(p > 0, p.double().log(), under)


def _softmax_logs(z: torch.Tensor, a: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`reference_logs` of the float32 ``a = softmax(z)``, with the float64
    log-probabilities below float32's range taken from the same dot products.

    z: (B, N, N) float32 dot products, a: their row softmax; at: (B, N, k) the columns to
    take per row (None: all) -> (B, N, k) float64. ``log a[i, j] = z[i, j] - z_max[i] -
    log s[i]``, where ``s[i]`` is the row's sum of ``exp(z - z_max)``; the row's largest
    probability is ``1 / s[i]``, so ``log s`` comes from ``a``'s row maximum without a
    second pass of exponentials (exact to float32's rounding of ``1 / s``).
    """
    shift = a.amax(-1, keepdim=True).double().log() - z.amax(-1, keepdim=True).double()
    if at is not None:
        z, a = z.gather(-1, at), a.gather(-1, at)
    return reference_logs(a, z.double() + shift)


def _scores(
    metric: str,
    x: torch.Tensor,
    num_prefix_tokens: int,
    attn: torch.Tensor | None,
    keys: torch.Tensor | None,
    at: torch.Tensor | None,
    logs: bool,
) -> torch.Tensor:
    """The metric's scores of each patch token towards the columns ``at`` (B, N, k) of its
    row, or towards every token (``at=None``): float64 natural logs, or with
    ``logs=False`` the float32 probabilities they decide by (for the features metric one
    (B, N, N) product and its float32 softmax, :func:`_softmax_logs`)."""
    def take(t: torch.Tensor) -> torch.Tensor:
        return t if at is None else t.gather(-1, at)

    if metric == "features":
        f = x[:, num_prefix_tokens:].float()
        z = f @ f.transpose(-1, -2)  # the one N x N product
        a = torch.softmax(z, dim=-1)
        return _softmax_logs(z, a, at) if logs else take(a)
    if metric in ("keys", "cosine"):  # float64 throughout: no reference rounding to keep
        s = take(distribution(metric, x, num_prefix_tokens, attn, keys)).log()
        return s if logs else s.exp().float()
    p = take(distribution(metric, x, num_prefix_tokens, attn))
    return reference_logs(p) if logs else p


def neighbour_log_scores(
    metric: str,
    x: torch.Tensor,
    index: GridIndex,
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    *,
    logs: bool = True,
) -> torch.Tensor:
    """Block-0 tokens -> each patch token's natural-log scores towards its four neighbours.

    x: (B, P + N, C) hidden states after the attention residual; attn: (B, H, T, T) for
    ``metric="attention"``; keys: (B, P + N, c) for ``metric="keys"``; index: the grid's
    tables -> (B, N, 4) float64, ``-inf`` off the grid. For the features metric this is
    one (B, N, N) product and its row softmax, read at the four neighbours only
    (:func:`_softmax_logs`): the threshold decides as the reference does wherever its
    float32 softmax is above 0, and keeps an order below.

    ``logs=False``: the float32 probabilities ``float32(exp(score))`` instead (0 off the
    grid), which is all a fixed threshold needs where ``float32(sim) > 0``: the test is
    then ``p >= float32(sim)`` (:func:`tomato.core.visit.log_edges`), with no logarithm.
    """
    s = _scores(metric, x, num_prefix_tokens, attn, keys, index.safe.expand(x.shape[0], -1, -1), logs)
    return s.masked_fill(index.off_grid, -math.inf if logs else 0.0)


def log_distribution(
    metric: str,
    x: torch.Tensor,
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Like :func:`distribution`, as natural logs: (B, N, N) float64, every entry the score
    :func:`neighbour_log_scores` would give it (for pictures and studies of all pairs)."""
    return _scores(metric, x, num_prefix_tokens, attn, keys, None, True)


def distribution(
    metric: str,
    x: torch.Tensor,
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dispatch on the metric's name.

    x: (B, T, C) all tokens after the merge block's attention residual; attn: (B, H, T, T),
    needed only for ``metric="attention"``; keys: (B, T, c) head-averaged attention keys,
    only for ``metric="keys"``. Returns (B, N, N) over the patch tokens (for the cosine
    metrics, the score ``(1 + cos) / 2``, not a distribution).
    """
    if metric == "features":
        return feature_distribution(x[:, num_prefix_tokens:])
    if metric == "attention":
        if attn is None:
            raise ValueError("metric='attention' needs the block's attention probabilities")
        return attention_distribution(attn, num_prefix_tokens)
    if metric == "keys":
        if keys is None:
            raise ValueError("metric='keys' needs the block's head-averaged attention keys")
        return cosine_score(keys[:, num_prefix_tokens:])
    if metric == "cosine":
        return cosine_score(x[:, num_prefix_tokens:])
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
