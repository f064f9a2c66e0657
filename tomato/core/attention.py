"""timm's self-attention with proportional attention and optional outputs.

A merged token that stands for ``s`` patches should weigh as much as those ``s`` patches
did: proportional attention adds ``log(s)`` to every attention logit towards it. Padding
tokens have size 0, so ``log 0 = -inf`` masks them for free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttentionOut", "size_bias", "is_supported", "forward"]


@dataclass
class AttentionOut:
    """x: (B, T, C) attention output; keys: (B, T, c) keys averaged over heads (ToMe's
    metric) when asked for, else None; probs: (B, H, T, T) attention probabilities when
    asked for, else None."""

    x: torch.Tensor
    keys: torch.Tensor | None
    probs: torch.Tensor | None


def size_bias(size: torch.Tensor | None) -> torch.Tensor | None:
    """The proportional-attention bias ``log(size)`` for token sizes (B, T, 1), shaped
    (B, 1, 1, T) to broadcast over heads and queries (None for None).

    Sizes change only where tokens merge, so a patched model computes this once per
    merge and hands it to every later block's :func:`forward` instead of each block
    taking its own log."""
    return None if size is None else size.log()[:, None, None, :, 0]


def is_supported(attn: Any) -> bool:
    """Whether ``attn`` is timm's plain fused-qkv ``Attention`` that we know how to run."""
    return all(hasattr(attn, a) for a in ("qkv", "proj", "num_heads", "scale")) and isinstance(
        attn.qkv, nn.Linear
    )


def forward(
    attn: Any,
    x: torch.Tensor,
    size: torch.Tensor | None = None,
    need_probs: bool = False,
    bias: torch.Tensor | None = None,
    need_keys: bool = True,
) -> AttentionOut:
    """Run timm ``Attention`` ``attn`` on x: (B, T, C) with token sizes (B, T, 1) or None.

    ``bias``: a precomputed :func:`size_bias` (B, 1, 1, T) to use instead of ``size``;
    ``need_keys``: whether to average the keys over heads (only ToMe's matching reads
    them)."""
    b, t, c = x.shape
    heads = attn.num_heads
    head_dim = getattr(attn, "head_dim", None) or attn.qkv.out_features // (3 * heads)
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(b, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if bias is None:
        bias = size_bias(size)
    if bias is not None and bias.dtype != q.dtype:  # e.g. under autocast
        bias = bias.to(q.dtype)

    probs = None
    if need_probs or not getattr(attn, "fused_attn", False):
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        probs = logits.softmax(dim=-1)
        out = attn.attn_drop(probs) @ v
    else:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=attn.attn_drop.p if attn.training else 0.0
        )

    out = out.transpose(1, 2).reshape(b, t, heads * head_dim)
    norm = getattr(attn, "norm", None)  # (a default of nn.Identity() would build a module per call)
    if norm is not None:
        out = norm(out)
    if gate is not None:
        out = out * gate
    out = attn.proj_drop(attn.proj(out))
    keys = k.mean(dim=1) if need_keys else None
    return AttentionOut(out, keys, probs if need_probs else None)
