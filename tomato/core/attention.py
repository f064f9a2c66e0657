"""timm's self-attention with proportional attention and optional outputs.

A merged token that stands for ``s`` patches should weigh as much as those ``s`` patches
did: proportional attention adds ``log(s)`` to every attention logit towards it. Padding
tokens have size 0, so ``log 0 = -inf`` masks them for free.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AttentionOut:
    """x: (B, T, C) attention output; keys: (B, T, c) keys averaged over heads (ToMe's
    metric); probs: (B, H, T, T) attention probabilities when asked for, else None."""

    x: torch.Tensor
    keys: torch.Tensor
    probs: torch.Tensor | None


def is_supported(attn: nn.Module) -> bool:
    """Whether ``attn`` is timm's plain fused-qkv ``Attention`` that we know how to run."""
    return all(hasattr(attn, a) for a in ("qkv", "proj", "num_heads", "scale")) and isinstance(
        attn.qkv, nn.Linear
    )


def forward(
    attn: nn.Module,
    x: torch.Tensor,
    size: torch.Tensor | None = None,
    need_probs: bool = False,
) -> AttentionOut:
    """Run timm ``Attention`` ``attn`` on x: (B, T, C) with token sizes (B, T, 1) or None."""
    b, t, c = x.shape
    heads = attn.num_heads
    head_dim = getattr(attn, "head_dim", attn.qkv.out_features // (3 * heads))
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(b, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    bias = None if size is None else size.log().to(q.dtype)[:, None, None, :, 0]

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
    out = getattr(attn, "norm", nn.Identity())(out)
    if gate is not None:
        out = out * gate
    out = attn.proj_drop(attn.proj(out))
    return AttentionOut(out, k.mean(dim=1), probs if need_probs else None)
