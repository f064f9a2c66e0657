"""Beyond the paper: the merge block, the cosine metrics and ToMe after ToMato (the hybrid).

Random-init DeiT-Ti (no weights needed); the images have flat regions so that the
threshold merges different numbers of tokens per image, and batches really pad.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tomato
from tomato.core import attention, pipeline, similarity
from tomato.harness import flops, variants


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    x[1, :, :56] = 0.3  # a flat quarter
    x[2, :, :112] = 0.5  # a flat half
    return x




def reference(model: torch.nn.Module, images: torch.Tensor, settings: pipeline.Settings) -> torch.Tensor:
    """The method written out by hand on an unpatched model: plain blocks up to block
    ``settings.block``, its attention, the merge, then proportional attention to the end."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    p, size = model.num_prefix_tokens, None
    for i, blk in enumerate(model.blocks):
        a = attention.forward(blk.attn, blk.norm1(x), need_probs=True, need_keys=True,
                              bias=None if size is None else attention.size_bias(size))
        x = x + blk.ls1(a.x)
        if i == settings.block:
            merged = pipeline.merge_at_once(x, settings, (14, 14), p, a.probs, a.keys).merged
            x, size = merged.x, merged.size
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return model.forward_head(model.norm(x))


@torch.no_grad()
@pytest.mark.parametrize("block,metric", [(0, "features"), (3, "keys"), (6, "features")])
def test_the_merge_follows_the_attention_of_its_block(vit, images, block, metric):
    plain = vit()
    model = tomato.core.patch.timm(vit())
    model.metric, model.block, model.keep_ratio = metric, block, 0.6
    settings = tomato.core.patch.state(model).settings
    assert torch.allclose(model(images), reference(plain, images, settings), atol=1e-5)
    st = tomato.core.patch.state(model)
    assert st.merged_block == block
    assert st.tokens_per_block[:block] == [197] * block and st.tokens_per_block[block] < 197


@torch.no_grad()
def test_block_zero_is_the_default_and_the_paper(vit, images):
    model = tomato.core.patch.timm(vit())
    model.sim = 1e-3
    before = model(images)
    assert model.block == 0
    model.block = 3
    assert not torch.allclose(model(images), before, atol=1e-3)  # the knob does something
    model.block = 0
    assert torch.equal(model(images), before)
    model.sim = None
    model(images)
    assert tomato.core.patch.state(model).merged_block is None  # no merge, no block


def test_block_bad_values_say_one_line(vit):
    model = tomato.core.patch.timm(vit())
    for bad in (-1, 12, 1.5, True, "2", None):
        with pytest.raises(ValueError, match=r"^model\.block = .* is not allowed: block must be an int") as err:
            model.block = bad
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="ToMato setting"):
        tomato.core.patch.tome(vit()).block = 1


@torch.no_grad()
def test_cosine_metrics_score_half_one_plus_cosine(images):
    x = torch.randn(2, 197, 16)
    keys = torch.randn(2, 197, 8)
    want_x = (1 + F.cosine_similarity(x[:, 1:, None], x[:, None, 1:], dim=-1).double()) / 2
    want_k = (1 + F.cosine_similarity(keys[:, 1:, None], keys[:, None, 1:], dim=-1).double()) / 2
    assert torch.allclose(similarity.distribution("cosine", x, 1), want_x, atol=1e-6)
    assert torch.allclose(similarity.distribution("keys", x, 1, keys=keys), want_k, atol=1e-6)
    with pytest.raises(ValueError, match="keys"):
        similarity.distribution("keys", x, 1)


@torch.no_grad()
def test_hybrid_pads_do_not_leak_between_images(vit, images):
    """A batch whose images keep different token counts equals each image on its own."""
    model = tomato.core.patch.timm(vit())
    model.sim, model.r = 1e-3, 4
    batch = model(images)
    st = tomato.core.patch.state(model)
    assert len(set(st.tokens.tolist())) > 1  # the batch really pads
    assert st.tokens_per_block[1] == st.tokens_per_block[0] - 4
    alone = torch.cat([model(images[i : i + 1]) for i in range(len(images))])
    assert torch.allclose(batch, alone, atol=1e-5)


@torch.no_grad()
def test_hybrid_without_tomato_merge_is_tome_after_block_zero(vit, images):
    hybrid = tomato.core.patch.timm(vit())
    hybrid.sim, hybrid.r = float("inf"), 4  # ToMato's merge keeps every token
    tome = tomato.core.patch.tome(vit())
    tome.r = [0] + [4] * 11
    assert torch.allclose(hybrid(images), tome(images), atol=1e-5)


def test_hybrid_variant_and_its_flops(vit):
    v = variants.parse("hybrid:sim=1e-15,r=4")
    assert v.spec == "hybrid:r=4,sim=1e-15" and v.label == "ToMato sim=1e-15 + ToMe r=4"
    assert variants.parse("tomato:keep=0.7,block=0").spec == "tomato:keep_ratio=0.7"
    assert variants.parse("tomato:keep=0.7,block=3").label == "ToMato keep=0.7 block=3"
    for bad in ("hybrid:sim=1e-15", "hybrid:r=4", "hybrid:sim=1e-15,r=x", "hybrid:sim=1e-15,r=-1",
                "tomato:keep=0.7,block=-1", "tomato:keep=0.7,block=x"):
        with pytest.raises(ValueError, match="variant|block"):
            variants.parse(bad)
    dims = flops.dims_of(vit())
    late = flops.tokens_schedule_tomato(dims, 100, block=3)
    assert late[:3] == [(197.0, 197.0)] * 3 and late[3] == (197.0, 101.0) and late[4] == (101.0, 101.0)
    hyb = flops.tokens_schedule_tomato(dims, 100, r=4)
    assert [m for _, m in hyb][:3] == [101.0, 97.0, 93.0]
    base = flops.variant_flops(dims, variants.parse("tomato:sim=1e-15"), 100)
    assert flops.variant_flops(dims, v, 100) < base < flops.variant_flops(dims, variants.parse("tomato:sim=1e-15,block=3"), 100)


@torch.no_grad()
def test_variant_applies_block_metric_and_r(vit, images):
    model = vit()
    variants.parse("hybrid:keep=0.7,metric=keys,block=2,r=2").apply(model)
    st = tomato.core.patch.state(model)
    assert (model.block, model.metric, model.keep_ratio, model.r[3]) == (2, "keys", 0.7, 2)
    model(images)
    assert st.merged_block == 2 and st.tokens_per_block[3] == st.tokens_per_block[2] - 2


def test_equal_gflops_comparison_interpolates_photo_by_photo():
    """The reference curve's top-1 at a point's GFLOPs is the per-photo blend of its two
    neighbours, so the difference stays paired (and no curve is extrapolated)."""
    import numpy as np
    import pandas as pd

    from tomato.book import beyond

    n = 40
    right = {"lo": np.ones(n), "hi": np.zeros(n), "x": np.r_[np.ones(n // 2), np.zeros(n // 2)]}

    class Run:
        def predictions(self, spec):
            return pd.DataFrame({"index": np.arange(n)[::-1], "correct1": right[spec][::-1]})

    ref = pd.DataFrame({"variant": ["lo", "hi"], "gflops": [1.0, 3.0]})
    at = lambda g: beyond.versus_curve(Run(), pd.Series({"variant": "x", "gflops": g}), ref)  # noqa: E731
    assert at(2.0)["ref_top1"] == pytest.approx(50) and at(2.0)["diff"] == pytest.approx(0)
    assert at(1.5)["ref_top1"] == pytest.approx(75) and at(1.5)["diff"] == pytest.approx(-25)
    assert at(1.5)["low"] < -25 < at(1.5)["high"]
    assert at(0.5) is None and at(3.5) is None


def test_the_answers_values_say_not_recorded_without_a_run():
    from tomato.book import beyond

    values = beyond.answer_values(None, None)
    assert {"block_tally", "block_best", "metric_best", "hybrid_tome_tally", "hybrid_keep_best", "sim_sd_budget",
            "sim_sd_fixed"} <= set(values)
    assert set(values.values()) == {"not recorded"}
