"""Proportional attention and size-weighted pooling, where sizes differ from 1.

The independent computation: a token of size ``s`` stands for ``s`` identical patches, so
a patched model given that one token with its size must compute what the *unpatched*
timm model computes on the sequence where the token is written out ``s`` times (copies
of one token stay identical through every block: attention treats them alike and the
MLP and norms work token by token).
"""
from __future__ import annotations

import pytest
import torch

import tomato
from tomato.core import merge




def compact_and_expanded(b: int, p: int, n: int, c: int, seed: int = 0):
    """Random prefix + n patch tokens with sizes 1..4, and the same written out.

    -> x: (b, p + n, c), size: (b, p + n, 1), expanded: list of (1, p + sum(size), c)
    (one per image: images expand to different lengths)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, p + n, c, generator=g)
    size = torch.randint(1, 5, (b, p + n, 1), generator=g).float()
    size[:, :p] = 1
    expanded = [
        torch.cat([x[i, :p], x[i, p:].repeat_interleave(size[i, p:, 0].long(), dim=0)])[None]
        for i in range(b)
    ]
    return x, size, expanded


@torch.no_grad()
def patched_forward(model: torch.nn.Module, x: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """The patched model's blocks, norm and head on tokens x with sizes (no merging)."""
    st = tomato.core.patch.state(model)
    st.reset(tuple(model.patch_embed.grid_size))
    st.size = size
    return model.forward_head(model.norm(model.blocks(x)))


@torch.no_grad()
def plain_forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.norm(model.blocks(x)))


@pytest.mark.parametrize("kind", ["timm", "tome"])
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("deit_tiny_patch16_224", {}),  # class-token head: tests proportional attention
        ("vit_tiny_patch16_224", {"global_pool": "avg"}),  # + size-weighted average pooling
    ],
)
def test_a_token_of_size_s_acts_like_s_copies(vit, kind, name, kwargs):
    plain = vit(name, **kwargs)
    x, size, expanded = compact_and_expanded(3, plain.num_prefix_tokens, 24, plain.embed_dim)
    ref = torch.cat([plain_forward(plain, e) for e in expanded])
    model = getattr(tomato.core.patch, kind)(vit(name, **kwargs))
    out = patched_forward(model, x, size)
    assert torch.allclose(out, ref, atol=2e-5), (out - ref).abs().max()
    # The same tokens with every size 1 are a different input: the check can fail.
    assert not torch.allclose(patched_forward(model, x, torch.ones_like(size)), ref, atol=1e-3)


def test_prop_attn_off_ignores_sizes_in_attention(vit):
    plain = vit("deit_tiny_patch16_224")
    x, size, _ = compact_and_expanded(2, 1, 24, plain.embed_dim)
    model = tomato.core.patch.tome(vit("deit_tiny_patch16_224"), prop_attn=False)
    assert torch.allclose(patched_forward(model, x, size), plain_forward(plain, x), atol=2e-5)


@torch.no_grad()
def test_avg_pool_of_merged_tokens_equals_pool_of_unmerged_tokens(vit):
    """After a real merge (with size-0 padding: the images keep different group counts),
    the patched pool equals timm's pool of the tokens before merging."""
    model = vit("vit_tiny_patch16_224", global_pool="avg")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1 + 16, model.embed_dim, generator=g)
    labels = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3], [0] * 8 + [1] * 7 + [2]])
    merged = merge.merge_groups(x, labels, torch.tensor([4, 3]), num_prefix_tokens=1)
    assert merged.size[1, -1] == 0  # image 1 is padded
    ref = model.pool(x)
    tomato.core.patch.timm(model)
    tomato.core.patch.state(model).size = merged.size
    assert torch.allclose(model.pool(merged.x), ref, atol=1e-5)
    assert not torch.allclose(merged.x[:, 1:].mean(dim=1), ref, atol=1e-3)  # unweighted differs
