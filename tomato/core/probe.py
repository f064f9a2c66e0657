"""Looking inside block 0 of a timm ViT: what ToMato's merge step sees, for pictures and studies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import attention, similarity

__all__ = ["Block0", "block0"]


@dataclass
class Block0:
    """x: (B, T, C) hidden states after block 0's attention residual (the merge input);
    attn: (B, H, T, T) block 0's attention probabilities; grid: (H, W) patch grid."""

    x: torch.Tensor
    attn: torch.Tensor
    grid: tuple[int, int]
    num_prefix_tokens: int

    def distribution(self, metric: str = "features") -> torch.Tensor:
        """(B, N, N) attention distribution over patch tokens (see :mod:`tomato.core.similarity`)."""
        return similarity.distribution(metric, self.x, self.num_prefix_tokens, self.attn)


@torch.inference_mode()
def block0(model: Any, images: torch.Tensor) -> Block0:
    """Run a timm ViT up to block 0's attention residual. images: (B, 3, H, W)."""
    x = model.patch_embed(images)
    grid = tuple(x.shape[1:3]) if x.ndim == 4 else tuple(model.patch_embed.grid_size)
    x = model.norm_pre(model.patch_drop(model._pos_embed(x)))
    blk = model.blocks[0]
    a = attention.forward(blk.attn, blk.norm1(x), need_probs=True)
    x = x + blk.ls1(a.x)
    return Block0(x, a.probs, grid, model.num_prefix_tokens)  # type: ignore[arg-type]
