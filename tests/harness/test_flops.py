from __future__ import annotations

import pytest
import torch

from tomato.harness.flops import (
    FLOPS_PER_MAC,
    ViTDims,
    block_flops,
    dims_of,
    tokens_schedule_tomato,
    tokens_schedule_tome,
    tomato_merge_flops,
    vit_flops,
)

DEIT_B = ViTDims(
    embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16,
    num_patches=196, num_prefix_tokens=1,
)


def unpatched(dims: ViTDims) -> list[tuple[float, float]]:
    n = float(dims.num_tokens)
    return [(n, n)] * dims.depth


def test_deit_b_matches_published_figure() -> None:
    total = vit_flops(DEIT_B, unpatched(DEIT_B))
    # The published "17.6 GFLOPs" (17.58e9) counts multiply-accumulates; we count 2/MAC.
    assert total / FLOPS_PER_MAC == pytest.approx(17.58e9, rel=0.02)
    # Exact value of our formula (pins it against accidental edits).
    assert total == pytest.approx(2 * 17_563_828_224, rel=1e-12)


def test_block_terms() -> None:
    t = block_flops(DEIT_B, 197, 197)
    assert t["qkv"] == 2 * 197 * 768 * 3 * 768
    assert t["attn_scores"] == t["attn_values"] == 2 * 197 * 197 * 768
    assert t["proj"] == 2 * 197 * 768 * 768
    assert t["mlp"] == 2 * 197 * 768 * 3072 * 2
    # Attention terms depend only on n_attn, the MLP only on n_mlp.
    t2 = block_flops(DEIT_B, 197, 100)
    assert t2["qkv"] == t["qkv"] and t2["attn_scores"] == t["attn_scores"]
    assert t2["mlp"] == pytest.approx(t["mlp"] * 100 / 197)


def test_monotonic_in_tokens() -> None:
    costs = [vit_flops(DEIT_B, tokens_schedule_tomato(DEIT_B, k)) for k in (20, 50, 100, 150, 196)]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    tome = [vit_flops(DEIT_B, tokens_schedule_tome(DEIT_B, r)) for r in (0, 2, 8, 16)]
    assert tome == sorted(tome, reverse=True) and len(set(tome)) == len(tome)


def test_tome_r0_equals_unpatched() -> None:
    assert tokens_schedule_tome(DEIT_B, 0) == unpatched(DEIT_B)
    assert vit_flops(DEIT_B, tokens_schedule_tome(DEIT_B, 0)) == vit_flops(DEIT_B, unpatched(DEIT_B))


def test_tome_schedule_removes_r_per_block_after_attention() -> None:
    sched = tokens_schedule_tome(DEIT_B, 2)
    assert sched[0] == (197, 195)
    assert sched[1] == (195, 193)
    assert sched[-1] == (197 - 2 * 11, 197 - 2 * 12)
    # ToMe r=2 keeps ~88% of tokens at the last block: the paper's "about 15%" average cut.
    mean_tokens = sum(a for a, _ in sched) / len(sched)
    assert 0.8 < mean_tokens / 197 < 0.95


def test_tome_schedule_caps_r_and_never_drops_below_prefix_plus_one() -> None:
    sched = tokens_schedule_tome(DEIT_B, 1000)
    n_in = [a for a, _ in sched]
    n_out = [m for _, m in sched]
    # Cap: at most half of the (n - prefix) tokens per block.
    assert sched[0] == (197, 197 - 98)
    assert all(m >= DEIT_B.num_prefix_tokens + 1 for m in n_out)
    assert n_in[1:] == n_out[:-1]
    assert n_out[-1] == 2  # 196 -> 98 -> 49 -> 25 -> 13 -> 7 -> 4 -> 2 -> 1 patches... +cls
    with pytest.raises(ValueError, match="13 blocks"):
        tokens_schedule_tome(DEIT_B, [1] * 13)
    assert tokens_schedule_tome(DEIT_B, [2] * 12) == tokens_schedule_tome(DEIT_B, 2)


@pytest.mark.parametrize("r", [[4, 2], (8, -1), (8, 1), (8, 0)])
def test_tome_schedule_follows_what_the_patched_model_runs(vit, r) -> None:
    # Short lists and (r, inflection) schedules: the FLOPs count the tokens that leave
    # each block of a ToMe-patched model given the same model.r.
    import tomato

    model = vit("deit_tiny_patch16_224")
    tomato.core.patch.tome(model)
    model.r = r
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    ran = tomato.core.patch.state(model).tokens_per_block
    sched = tokens_schedule_tome(dims_of(model), r)
    assert [m for _, m in sched] == ran
    assert tokens_schedule_tome(dims_of(model), (8, 0)) == tokens_schedule_tome(dims_of(model), 8)


def test_tomato_full_kept_equals_unpatched() -> None:
    base = vit_flops(DEIT_B, unpatched(DEIT_B))
    sched = tokens_schedule_tomato(DEIT_B, 196)
    assert sched == unpatched(DEIT_B)
    assert vit_flops(DEIT_B, sched) == base
    extra = tomato_merge_flops(DEIT_B)
    assert vit_flops(DEIT_B, sched, extra=extra) == base + extra


def test_tomato_schedule_shape() -> None:
    sched = tokens_schedule_tomato(DEIT_B, 160.5)
    assert sched[0] == (197, 161.5)
    assert all(s == (161.5, 161.5) for s in sched[1:])
    assert len(sched) == 12
    with pytest.raises(ValueError):
        tokens_schedule_tomato(DEIT_B, 0)
    with pytest.raises(ValueError):
        tokens_schedule_tomato(DEIT_B, 197)


def test_tomato_merge_cost_is_small() -> None:
    extra = tomato_merge_flops(DEIT_B)
    assert extra == 2 * 196 * 196 * 768
    assert extra / vit_flops(DEIT_B, unpatched(DEIT_B)) < 0.002


def test_vit_flops_needs_one_entry_per_block() -> None:
    with pytest.raises(ValueError):
        vit_flops(DEIT_B, [(197.0, 197.0)])


def test_dims_of_timm_deit_tiny(vit) -> None:
    model = vit("deit_tiny_patch16_224")
    d = dims_of(model)
    assert (d.embed_dim, d.depth, d.num_heads, d.num_patches) == (192, 12, 3, 196)
    assert d.mlp_ratio == 4.0 and d.hidden_dim == 768
    assert d.patch_size == 16 and d.patch_area == 256
    assert d.num_prefix_tokens == 1 and d.num_classes == 1000 and d.in_chans == 3
    # Cross-check our count against the model's own parameter shapes: every Linear in the
    # blocks is used once per token, so block MACs = n * (sum of block Linear weights)
    # plus the two n^2*C attention products.
    n = d.num_tokens
    linear_weights = sum(
        m.weight.numel() for m in model.blocks.modules() if isinstance(m, torch.nn.Linear)
    )
    expected_blocks = 2 * (n * linear_weights + d.depth * 2 * n * n * d.embed_dim)
    pe = model.patch_embed.proj.weight.numel() * d.num_patches * 2
    head = model.head.weight.numel() * 2
    assert vit_flops(d, unpatched(d)) == pytest.approx(expected_blocks + pe + head, rel=1e-12)


def test_dims_of_distilled_has_two_prefix_tokens(vit) -> None:
    model = vit("deit_tiny_distilled_patch16_224")
    d = dims_of(model)
    assert d.num_prefix_tokens == 2 and d.num_tokens == 198
    assert tokens_schedule_tome(d, 2)[0] == (198, 196)
