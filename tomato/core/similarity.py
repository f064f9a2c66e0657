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
"""
from __future__ import annotations

from typing import Literal

import torch

Metric = Literal["features", "attention"]
METRICS: tuple[str, ...] = ("features", "attention")


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


def log_distribution(
    metric: str,
    x: torch.Tensor,
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
) -> torch.Tensor:
    """Like :func:`distribution`, as log-probabilities: (B, N, N).

    ToMato's threshold test runs in the log domain. The features metric's rows are so
    peaked that most float32 probabilities underflow to exactly 0 (below ~1e-38), which
    makes every threshold under that point act alike and leaves the budget search with
    hundreds of tied candidates. ``log A >= log sim`` decides exactly like
    ``A >= sim`` wherever ``A`` is representable, and keeps the order below it.
    """
    if metric == "features":
        p = x[:, num_prefix_tokens:].float()
        return torch.log_softmax(p @ p.transpose(-1, -2), dim=-1)
    a = distribution(metric, x, num_prefix_tokens, attn)
    # Head-averaged probabilities rarely underflow; clamp so every score stays finite.
    return a.clamp_min(torch.finfo(a.dtype).tiny).log()


def distribution(
    metric: str,
    x: torch.Tensor,
    num_prefix_tokens: int,
    attn: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dispatch on the metric's name.

    x: (B, T, C) all tokens after block 0's attention residual; attn: (B, H, T, T), needed
    only for ``metric="attention"``. Returns (B, N, N) over the patch tokens.
    """
    if metric == "features":
        return feature_distribution(x[:, num_prefix_tokens:])
    if metric == "attention":
        if attn is None:
            raise ValueError("metric='attention' needs the block's attention probabilities")
        return attention_distribution(attn, num_prefix_tokens)
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
