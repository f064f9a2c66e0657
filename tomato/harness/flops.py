"""Theoretical forward cost of a ViT from the token counts it actually runs on.

We count multiply-accumulates of the matrix products and report FLOPs = 2 x MACs.
Norms, softmax, GELU, residual adds, biases and the proportional-attention ``log(size)``
bias are ignored: they are O(n*C) and together well under 1% for ViT-B.

Note on the familiar "DeiT-B = 17.6 GFLOPs": that figure (DeiT paper, fvcore, timm's
model cards) counts one multiply-accumulate as one "FLOP". Our count for DeiT-B is
17.56e9 MACs = 35.13e9 FLOPs; divide :func:`vit_flops` by :data:`FLOPS_PER_MAC` to
compare with published tables. Because every term is linear in the token counts or in
their squares, ratios between variants are the same in either convention.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Tuple

import torch.nn as nn

from ..core import tome

if TYPE_CHECKING:  # pragma: no cover
    from .variants import Variant

__all__ = [
    "FLOPS_PER_MAC",
    "ViTDims",
    "dims_of",
    "block_flops",
    "vit_flops",
    "tokens_schedule_tome",
    "tokens_schedule_tomato",
    "tomato_merge_flops",
    "DEIT_B",
    "variant_flops",
    "model_flops",
]

#: One multiply-accumulate = one multiply + one add.
FLOPS_PER_MAC = 2

# (n_attn, n_mlp) for one block: tokens entering attention, tokens entering the MLP.
# typing.List/Tuple, not list[...]: this alias is evaluated at import, and Python 3.8
# (JetPack 5) has no subscriptable builtins.
Schedule = List[Tuple[float, float]]


@dataclass(frozen=True)
class ViTDims:
    """The shape parameters that determine a plain ViT's cost.

    Field order differs from the paper-style listing only because dataclass fields with
    defaults (``in_chans``, ``num_classes``) must come last.
    ``patch_size`` may be an int (square) or ``(height, width)``.
    """

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch_size: int | tuple[int, int]
    num_patches: int
    num_prefix_tokens: int
    in_chans: int = 3
    num_classes: int = 1000

    @property
    def hidden_dim(self) -> int:
        """MLP hidden width."""
        return int(round(self.embed_dim * self.mlp_ratio))

    @property
    def num_tokens(self) -> int:
        """Tokens entering block 0: patches plus class/distillation/register tokens."""
        return self.num_patches + self.num_prefix_tokens

    @property
    def patch_area(self) -> int:
        """Pixels per patch (per channel)."""
        if isinstance(self.patch_size, int):
            return self.patch_size * self.patch_size
        h, w = self.patch_size
        return h * w


#: Shape of DeiT-B/16 at 224x224 (what the paper runs), for FLOPs without building the model.
DEIT_B = ViTDims(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16,
                 num_patches=196, num_prefix_tokens=1)


def input_patches(model: nn.Module) -> int:
    """Patch tokens of one image at the input size the model is fed: its data config's
    (a model card's size, for a model trained here) where it takes any size
    (``dynamic_img_size``), else the size it was built for (``patch_embed.num_patches``)."""
    pe = model.patch_embed
    if getattr(model, "dynamic_img_size", False):
        import timm.data

        h, w = timm.data.resolve_model_data_config(model)["input_size"][-2:]
        gh, gw = pe.dynamic_feat_size((int(h), int(w)))
        return int(gh) * int(gw)
    return int(pe.num_patches)


def dims_of(model: nn.Module) -> ViTDims:
    """Read :class:`ViTDims` from a timm ``VisionTransformer``."""
    block0 = model.blocks[0]
    embed_dim = int(model.embed_dim)
    patch = model.patch_embed.patch_size
    patch_size: int | tuple[int, int]
    if isinstance(patch, int):
        patch_size = patch
    else:
        ph, pw = (int(p) for p in patch)
        patch_size = ph if ph == pw else (ph, pw)
    proj = model.patch_embed.proj
    in_chans = int(getattr(proj, "in_channels", 3))
    # model.num_classes is 0 when the head was reset to Identity (feature extraction).
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    return ViTDims(
        embed_dim=embed_dim,
        depth=len(model.blocks),
        num_heads=int(block0.attn.num_heads),
        mlp_ratio=block0.mlp.fc1.out_features / embed_dim,
        patch_size=patch_size,
        num_patches=input_patches(model),
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 1)),
        in_chans=in_chans,
        num_classes=num_classes,
    )


def block_flops(dims: ViTDims, n_attn: float, n_mlp: float) -> dict[str, float]:
    """FLOPs of one transformer block, term by term (sum the values for the total).

    ``n_attn`` tokens go through attention; ``n_mlp`` through the MLP (fewer when a merge
    -- ToMe's or ToMato's -- sits between the two). The head count does not change the
    cost: heads split C, they do not multiply it.
    """
    c = dims.embed_dim
    return {
        "qkv": 2.0 * n_attn * c * 3 * c,
        "attn_scores": 2.0 * n_attn * n_attn * c,  # q @ k^T over all heads
        "attn_values": 2.0 * n_attn * n_attn * c,  # softmax(qk) @ v
        "proj": 2.0 * n_attn * c * c,
        "mlp": 2.0 * n_mlp * c * dims.hidden_dim * 2,  # fc1 and fc2
    }


def _patch_embed_flops(dims: ViTDims) -> float:
    # A stride-p conv is one (in_chans*p*p) -> C matmul per patch.
    return 2.0 * dims.num_patches * dims.in_chans * dims.patch_area * dims.embed_dim


def _head_flops(dims: ViTDims) -> float:
    # The classifier sees one pooled/class-token vector. (Distilled DeiT has a second
    # head of the same size; its 1.5 MFLOPs are ignored like the norms.)
    return 2.0 * dims.embed_dim * dims.num_classes


def vit_flops(dims: ViTDims, tokens: Sequence[tuple[float, float]], extra: float = 0.0) -> float:
    """Total forward FLOPs for one image: patch embedding + blocks + head + ``extra``.

    ``tokens`` gives ``(n_attn, n_mlp)`` per block (see :func:`tokens_schedule_tome`,
    :func:`tokens_schedule_tomato`); ``extra`` is the merge's own cost.
    """
    if len(tokens) != dims.depth:
        raise ValueError(f"need one (n_attn, n_mlp) per block: {dims.depth}, got {len(tokens)}")
    blocks = sum(sum(block_flops(dims, a, m).values()) for a, m in tokens)
    return _patch_embed_flops(dims) + blocks + _head_flops(dims) + float(extra)


def tokens_schedule_tome(dims: ViTDims, r: tome.RSpec) -> Schedule:
    """ToMe: each block removes up to ``r`` tokens after attention, before the MLP.

    As in ToMe's bipartite matching, ``r`` is capped at half the mergeable tokens
    (``(n - prefix) // 2``), so at least ``prefix + 1`` tokens always remain.
    ``r`` takes every form a patched model's ``model.r`` does (see
    :func:`tomato.core.tome.per_block_r`): an int, a per-block list (a short one is
    padded with zeros) or an ``(r, inflection)`` schedule; so the FLOPs count the very
    schedule the model runs.
    """
    rs = tome.per_block_r(r, dims.depth)
    prefix = dims.num_prefix_tokens
    n = float(dims.num_tokens)
    out: Schedule = []
    for r_i in rs:
        r_eff = max(0, min(r_i, int(n - prefix) // 2))
        n_after = max(n - r_eff, prefix + 1.0)
        out.append((n, n_after))
        n = n_after
    return out


def tokens_schedule_tomato(
    dims: ViTDims, kept_patches: float, block: int = 0, r: tome.RSpec | None = None
) -> Schedule:
    """ToMato: one merge in block ``block`` between attention and MLP (the paper's block 0
    by default); the blocks after it run on what it kept, less ToMe's ``r`` per block when
    given (the hybrid: ToMe in the blocks after ToMato's merge).

    ``kept_patches`` is the number of patch groups left after the merge (may be a mean
    over images, hence float); prefix tokens are never merged.
    """
    if not 1 <= kept_patches <= dims.num_patches:
        raise ValueError(f"kept_patches must be in [1, {dims.num_patches}], got {kept_patches}")
    if not 0 <= block < dims.depth:
        raise ValueError(f"block must be in [0, {dims.depth - 1}], got {block}")
    prefix = dims.num_prefix_tokens
    rs = tome.per_block_r(r, dims.depth) if r else [0] * dims.depth
    full = float(dims.num_tokens)
    n = prefix + float(kept_patches)
    out: Schedule = [(full, full)] * block + [(full, n)]
    for r_i in rs[block + 1:]:
        r_eff = max(0, min(r_i, int(n - prefix) // 2))  # as ToMe's matching caps it
        n_after = max(n - r_eff, prefix + 1.0)
        out.append((n, n_after))
        n = n_after
    return out


def tomato_merge_flops(dims: ViTDims) -> float:
    """ToMato's similarity cost: ``x @ x.T`` over the patch tokens (2*N^2*C FLOPs).

    The softmax and the neighbour visit are O(N^2) and O(N) without a C factor and are
    ignored; the group-mean is O(N*C).
    """
    n = dims.num_patches
    return 2.0 * n * n * dims.embed_dim


def variant_flops(dims: ViTDims, variant: Variant, kept_patches: float) -> float:
    """FLOPs of one image through a ViT of shape ``dims`` as ``variant``, keeping
    ``kept_patches`` patch tokens after ToMato's merge (ToMato and the hybrid; ToMe's
    schedule is fixed by r)."""
    if variant.kind == "tome":
        return vit_flops(dims, tokens_schedule_tome(dims, variant.get("r", 0)))
    if variant.kind in ("tomato", "hybrid"):
        kept = min(max(1.0, kept_patches), dims.num_patches)
        schedule = tokens_schedule_tomato(dims, kept, variant.get("block", 0), variant.get("r"))
        return vit_flops(dims, schedule, extra=tomato_merge_flops(dims))
    return vit_flops(dims, tokens_schedule_tomato(dims, dims.num_patches))


def model_flops(model: nn.Module, variant: Variant, kept_patches: float) -> float:
    """:func:`variant_flops` for ``model``'s own shape."""
    return variant_flops(dims_of(model), variant, kept_patches)
