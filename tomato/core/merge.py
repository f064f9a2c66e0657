"""Turning group labels into merged tokens.

Each group becomes one token: the (size-weighted) mean of its members, with its size kept
for proportional attention in later blocks. Prefix tokens (class, distillation, registers)
pass through in place, so timm's heads still find the class token at 0 and the
distillation token at 1 (the reference code appends it last, which would silently break
``deit_*_distilled_*``).

Batches whose images keep different numbers of groups are padded to the largest count
with zero tokens of **size 0**: proportional attention adds ``log(size) = -inf`` to those
keys, so no real token ever attends to a pad and each image's result equals its
per-image run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Merged", "merge_groups", "padding_mask", "unmerge"]


@dataclass
class Merged:
    """Output of :func:`merge_groups`.

    x: (B, P + G, C) prefix tokens then groups in root order (zero-padded);
    size: (B, P + G, 1) patches each token stands for (0 for padding);
    labels: (B, N) group of each input patch token (the source map, for visualisation);
    counts: (B,) real groups per image.
    """

    x: torch.Tensor
    size: torch.Tensor
    labels: torch.Tensor
    counts: torch.Tensor


def merge_groups(
    x: torch.Tensor,
    labels: torch.Tensor,
    counts: torch.Tensor,
    num_prefix_tokens: int,
    size: torch.Tensor | None = None,
    groups: int | None = None,
) -> Merged:
    """Average each group of patch tokens into one token.

    x: (B, P + N, C) tokens; labels: (B, N) in 0..counts-1; counts: (B,);
    size: optional (B, P + N, 1) sizes of the incoming tokens (ones when None);
    groups: ``counts.max()`` when the caller already read it (otherwise it is read here,
    a host sync). The size-weighted sum of the output equals the sum of the input patch tokens.
    """
    b, t, c = x.shape
    p = num_prefix_tokens
    if labels.shape != (b, t - p):
        raise ValueError(f"labels {tuple(labels.shape)} do not match {t - p} patch tokens")
    g = int(counts.max()) if groups is None else groups
    # Sum in at least float32: a group can hold hundreds of tokens and fp16 sums drift.
    acc = torch.promote_types(x.dtype, torch.float32)
    # Every image's groups as rows of one (B G, C) table: one index_add for the sums and
    # one for the sizes (an index_add over rows is several times faster than a scatter_add
    # with an index expanded over the channels).
    rows = (labels + torch.arange(b, device=x.device).unsqueeze(1) * g).view(-1)
    patches = _as(x[:, p:], acc)
    w = None if size is None else _as(size[:, p:], acc)
    weighted = patches if w is None else patches * w
    sums = patches.new_zeros(b * g, c).index_add_(0, rows, weighted.reshape(b * (t - p), c))
    ones = patches.new_ones(b * (t - p)) if w is None else w.reshape(-1)
    new_size = patches.new_zeros(b * g).index_add_(0, rows, ones).view(b, g, 1)
    mean = sums.view(b, g, c) / new_size.clamp_min(1e-12)
    prefix_size = x.new_ones(b, p, 1) if size is None else size[:, :p]
    out = torch.cat([x[:, :p], _as(mean, x.dtype)], dim=1)
    out_size = torch.cat([prefix_size, _as(new_size, prefix_size.dtype)], dim=1)
    return Merged(out, out_size, labels, counts)


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``, without dispatching a conversion when it already is (each call
    costs a dispatch even as a no-op, and the merge step is dispatch-bound at batch 1)."""
    return t if t.dtype == dtype else t.to(dtype)


def padding_mask(counts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """counts: (B,) -> (B, P + G) bool, True for real tokens, False for padding."""
    g = int(counts.max())
    real = torch.arange(g, device=counts.device) < counts.unsqueeze(1)
    prefix = real.new_ones(real.shape[0], num_prefix_tokens)
    return torch.cat([prefix, real], dim=1)


def unmerge(tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Spread per-group values back onto the patch grid (for pictures).

    tokens: (B, G, ...) one value per group; labels: (B, N) -> (B, N, ...).
    """
    idx = labels.view(*labels.shape, *([1] * (tokens.ndim - 2)))
    return tokens.gather(1, idx.expand(-1, -1, *tokens.shape[2:]))
