"""ToMe (Bolya et al., ICLR 2023), the baseline ToMato is compared with.

Written here from the published algorithm (ToMe is not on the package index):
bipartite soft matching in *every* block, after attention and before the MLP. Tokens are
split alternately into sets A and B; each A token finds its most similar B token (cosine
similarity of the attention keys averaged over heads); the ``r`` most similar pairs are
merged (size-weighted mean), so each block leaves ``r`` fewer tokens. The class token is
protected (never merged away) and so is the distillation token.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

MergeFn = Callable[..., torch.Tensor]


def _identity(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    return x


def bipartite_soft_matching(
    metric: torch.Tensor, r: int, class_token: bool = True, distill_token: bool = False
) -> MergeFn:
    """ToMe's matching. metric: (B, T, c) keys -> ``merge(x: (B, T, C), mode) -> (B, T - r, C)``.

    ``r`` is capped at half the mergeable tokens, as in ToMe.
    """
    protected = int(class_token) + int(distill_token)
    t = metric.shape[1]
    r = min(r, (t - protected) // 2)
    if r <= 0:
        return _identity

    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[..., ::2, :], metric[..., 1::2, :]
        scores = a @ b.transpose(-1, -2)
        # Token 0 (class) is in A and token 1 (distillation) is in B: never merge them.
        if class_token:
            scores[..., 0, :] = -math.inf
        if distill_token:
            scores[..., :, 0] = -math.inf
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
        unm_idx = edge_idx[..., r:, :]  # A tokens that stay
        src_idx = edge_idx[..., :r, :]  # A tokens merged into B
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
        if class_token:
            # Keep the class token first among the unmerged tokens.
            unm_idx = unm_idx.sort(dim=1)[0]

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        n, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(n, t1 - r, c))
        src = src.gather(dim=-2, index=src_idx.expand(n, r, c))
        dst = dst.scatter_reduce(-2, dst_idx.expand(n, r, c), src, reduce=mode)
        if distill_token:
            return torch.cat([unm[:, :1], dst[:, :1], unm[:, 1:], dst[:, 1:]], dim=1)
        return torch.cat([unm, dst], dim=1)

    return merge


def merge_wavg(
    merge: MergeFn, x: torch.Tensor, size: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average merge. x: (B, T, C), size: (B, T, 1) -> both with T - r tokens."""
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    x = merge(x * size, mode="sum")
    size = merge(size, mode="sum")
    return x / size, size


def merge_source(
    merge: MergeFn, x: torch.Tensor, source: torch.Tensor | None = None
) -> torch.Tensor:
    """Track which input tokens each output token stands for: (B, T_out, T_in) 0/1."""
    if source is None:
        n, t, _ = x.shape
        source = torch.eye(t, device=x.device, dtype=x.dtype)[None].expand(n, t, t)
    return merge(source, mode="amax")


def schedule(r: int | Sequence[int], depth: int) -> list[int]:
    """Tokens to merge in each block: a constant ``r`` or an explicit per-block list."""
    if isinstance(r, bool):
        raise ValueError(f"r must be an int >= 0 or a list of them, got {r!r}")
    if isinstance(r, int):
        if r < 0:
            raise ValueError(f"r must be >= 0, got {r}")
        return [r] * depth
    rs = [int(v) for v in r]
    if len(rs) != depth or any(v < 0 for v in rs):
        raise ValueError(f"a per-block r needs {depth} values >= 0, got {list(r)}")
    return rs
