"""Patched timm models: ToMato and ToMe on random-weight DeiT/ViT (no weights needed)."""
from __future__ import annotations

import re

import pytest
import torch

import tomato
from tomato.core import attention


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))




@torch.no_grad()
@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_no_merge_equals_unpatched(vit, name, images):
    model = vit(name)
    ref = model(images)
    tomato.core.patch.timm(model)
    assert torch.allclose(model(images), ref, atol=1e-5)  # not yet configured: no merging
    model.sim = float("inf")  # runs the whole merge path with singleton groups
    assert torch.allclose(model(images), ref, atol=1e-5)
    assert tomato.core.patch.state(model).tokens.tolist() == [196] * 3


@torch.no_grad()
def test_merging_changes_tokens_and_output(vit, images):
    model = tomato.core.patch.timm(vit())
    ref = model(images)
    model.sim = 0.0
    out = model(images)
    st = tomato.core.patch.state(model)
    assert st.tokens.tolist() == [1, 1, 1] and st.tokens_per_block == [2] * 12
    assert not torch.allclose(out, ref, atol=1e-3)


@torch.no_grad()
@pytest.mark.parametrize(
    "config",
    [
        dict(sim=1e-20),
        dict(sim=1e-20, method="parallel"),
        dict(sim=1e-20, method="parallel", rule="both"),
        dict(keep_ratio=0.6),
        dict(keep_ratio=0.6, method="parallel"),
        dict(tokens=50),
        dict(sim=1e-20, prop_attn=False),  # padding stays masked without proportional attention
    ],
)
def test_batched_equals_per_image(vit, config, images):
    model = tomato.core.patch.timm(vit())
    for k, v in config.items():
        setattr(model, k, v)
    out = model(images)
    tokens = tomato.core.patch.state(model).tokens.tolist()
    assert len(set(tokens)) > 1 or "tokens" in config or "keep_ratio" in config
    for i in range(images.shape[0]):
        single = model(images[i : i + 1])
        assert tomato.core.patch.state(model).tokens.tolist() == [tokens[i]]
        assert torch.allclose(single, out[i : i + 1], atol=1e-4), config


@torch.no_grad()
def test_budget_keeps_at_most_the_budget(vit, images):
    model = tomato.core.patch.timm(vit())
    model.keep_ratio = 0.5
    model(images)
    st = tomato.core.patch.state(model)
    assert (st.tokens <= 98).all() and (st.tokens >= 1).all()
    assert torch.isfinite(st.sim).all()


@torch.no_grad()
def test_attention_metric_runs_and_uses_probabilities(vit, images):
    model = tomato.core.patch.timm(vit())
    model.metric = "attention"
    model.sim = 1.0 / 196  # random-init attention is near uniform
    model(images)
    kept = tomato.core.patch.state(model).tokens
    assert (kept < 196).all()


@torch.no_grad()
def test_explicit_attention_path_equals_fused(vit):
    model = vit()
    x = torch.randn(2, 197, 192)
    attn = model.blocks[0].attn
    size = torch.rand(2, 197, 1) + 0.5
    fused = attention.forward(attn, x, size)
    explicit = attention.forward(attn, x, size, need_probs=True)
    assert torch.allclose(fused.x, explicit.x, atol=1e-5)
    assert explicit.probs.shape == (2, 3, 197, 197)
    assert torch.allclose(explicit.probs.sum(-1), torch.ones(2, 3, 197), atol=1e-5)
    assert torch.allclose(attention.forward(attn, x).x, attn(x), atol=1e-5)


def test_precomputed_bias_equals_sizes_and_keys_are_optional(vit):
    model = vit()
    x = torch.randn(2, 197, 192)
    attn = model.blocks[0].attn
    size = torch.rand(2, 197, 1) + 0.5
    size[1, -5:] = 0  # padding: log 0 = -inf masks it
    ref = attention.forward(attn, x, size)
    bias = attention.size_bias(size)
    assert bias.shape == (2, 1, 1, 197)
    got = attention.forward(attn, x, bias=bias, need_keys=False)
    assert torch.equal(got.x, ref.x)
    assert got.keys is None and ref.keys.shape == (2, 197, 64)


@torch.no_grad()
def test_one_patched_class_per_timm_class(vit, images):
    # torch.compile guards on a block's class: blocks that share one patched class (and
    # branch on their index) compile once, where twelve distinct classes recompiled.
    a, b = vit(), vit()
    tomato.core.patch.timm(a)
    tomato.core.patch.timm(b)
    classes = {type(blk) for blk in [*a.blocks, *b.blocks]}
    assert len(classes) == 1 and type(a) is type(b)
    a.sim = 0.0
    a(images[:1])  # still merges in block 0 only
    st = tomato.core.patch.state(a)
    assert st.tokens_per_block[0] < 197 and len(set(st.tokens_per_block)) == 1
    assert torch.equal(st.bias, attention.size_bias(st.size))
    tomato.core.patch.tome(tomato.core.patch.remove(b))
    tome_classes = {type(blk) for blk in b.blocks}
    assert len(tome_classes) == 1 and tome_classes != classes


@torch.no_grad()
@pytest.mark.parametrize(
    "name,kwargs,grid",
    [
        ("vit_tiny_patch16_384", {}, (24, 24)),
        ("deit_tiny_patch16_224", {"img_size": (224, 160)}, (14, 10)),
    ],
)
def test_other_grids(vit, name, kwargs, grid):
    model = vit(name, **kwargs)
    h, w = model.patch_embed.img_size
    x = torch.randn(2, 3, h, w)
    ref = model(x)
    tomato.core.patch.timm(model)
    model.sim = float("inf")
    assert torch.allclose(model(x), ref, atol=1e-5)
    assert tomato.core.patch.state(model).grid == grid
    model.sim = 1e-30
    model.method = "parallel"
    model(x)
    assert tomato.core.patch.state(model).labels.shape == (2, grid[0] * grid[1])


@torch.no_grad()
def test_remove_restores_the_model(vit, images):
    model = vit()
    cls, block_cls = type(model), type(model.blocks[0])
    ref = model(images)
    tomato.core.patch.timm(model)
    model.sim = 0.0
    model(images)
    tomato.core.patch.remove(model)
    assert type(model) is cls and type(model.blocks[0]) is block_cls
    assert not hasattr(model, "_tomato")
    assert torch.equal(model(images), ref)
    with pytest.raises(ValueError, match="not patched"):
        tomato.core.patch.remove(model)


def test_bad_settings_fail_at_assignment(vit):
    model = tomato.core.patch.timm(vit())
    for name, bad in [("sim", float("nan")), ("sim", -1e-7), ("keep_ratio", 0.0), ("keep_ratio", 2.0),
                      ("method", "dfs"), ("metric", "cosines"), ("tokens", 0),
                      ("block", -1), ("block", 12), ("block", 2.0), ("block", True)]:
        with pytest.raises(ValueError):
            setattr(model, name, bad)
    assert model.sim is None and model.keep_ratio is None  # a refused value changes nothing
    model.sim = 1e-7
    model.keep_ratio = 0.9  # a budget replaces the fixed threshold
    assert model.sim is None and model.keep_ratio == 0.9
    model.r = 2  # on a ToMato model, ToMe's r runs in the blocks after the merge (the hybrid)
    assert model.r == [2] * 12
    with pytest.raises(ValueError, match="r"):
        model.r = -1


@pytest.mark.parametrize(
    "name,value,allowed",
    [
        ("keep_ratio", True, r"keep_ratio must be a number in \(0, 1\]"),
        ("tokens", True, "tokens must be an int >= 1"),
        ("sim", True, "sim must be a number >= 0"),
        ("sim", "1e-7", "sim must be a number >= 0"),
        ("sim", float("nan"), "sim must be a number >= 0"),
        ("keep_ratio", 2.0, r"keep_ratio must be a number in \(0, 1\]"),
        ("tokens", 2.5, "tokens must be an int >= 1"),
        ("method", "dfs", "method must be one of faithful, parallel"),
        ("prop_attn", 1, "prop_attn must be True or False"),
    ],
)
def test_bad_tomato_settings_name_attribute_value_and_what_is_allowed(vit, name, value, allowed):
    model = tomato.core.patch.timm(vit())
    with pytest.raises(ValueError, match=rf"^model\.{name} = {re.escape(repr(value))} is not allowed: {allowed}"):
        setattr(model, name, value)


@pytest.mark.parametrize("value", [2.5, -1, "2", True, (2, 3), [1, 2.0]])
def test_bad_tome_r_names_attribute_value_and_what_is_allowed(vit, value):
    model = tomato.core.patch.tome(vit())
    with pytest.raises(ValueError, match=rf"^model\.r = {re.escape(repr(value))} is not allowed: r must be an int >= 0"):
        model.r = value
    assert model.r == []  # a refused value changes nothing
    with pytest.raises(ValueError, match="patched with ToMe"):
        model.sim = 1e-7


def test_unsupported_models_are_refused(vit):
    with pytest.raises(ValueError, match="not a timm VisionTransformer"):
        tomato.core.patch.timm(torch.nn.Linear(3, 3))
    no_cls = vit("vit_tiny_patch16_224", class_token=False, global_pool="avg")
    with pytest.raises(ValueError, match="class token"):
        tomato.core.patch.timm(no_cls)
    with pytest.raises(ValueError, match="not a timm VisionTransformer"):
        tomato.core.patch.tome(vit("resnet18"))


@torch.no_grad()
def test_avg_pool_models_weigh_tokens_by_size(vit):
    model = vit("vit_tiny_patch16_224", global_pool="avg")
    x = torch.randn(2, 3, 224, 224)
    ref = model(x)
    tomato.core.patch.timm(model)
    model.sim = float("inf")
    assert torch.allclose(model(x), ref, atol=1e-5)


# ---------------------------------------------------------------- ToMe


@torch.no_grad()
@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_tome_r0_equals_unpatched_and_r_tokens_leave_each_block(vit, name, images):
    model = vit(name)
    ref = model(images)
    tomato.core.patch.tome(model)
    assert torch.allclose(model(images), ref, atol=1e-5)
    model.r = 0
    assert torch.allclose(model(images), ref, atol=1e-5)
    model.r = 8
    model(images)
    t0 = 196 + model.num_prefix_tokens
    assert tomato.core.patch.state(model).tokens_per_block == [t0 - 8 * (i + 1) for i in range(12)]


@torch.no_grad()
def test_tome_keeps_class_and_distillation_tokens_in_place(vit, images):
    model = vit("deit_tiny_distilled_patch16_224")
    x = model.patch_embed(images[:1])
    tomato.core.patch.tome(model, trace_source=True)
    model.r = 16
    model(images[:1])
    st = tomato.core.patch.state(model)
    assert st.size[0, :2].flatten().tolist() == [1, 1]  # never merged
    assert st.source[0, 0, 0] == 1 and st.source[0, 1, 1] == 1
    assert st.size.sum() == x.shape[1] + 2


@torch.no_grad()
def test_tome_source_trace(vit, images):
    model = tomato.core.patch.tome(vit(), trace_source=True)
    model.r = 8
    model(images[:1])
    src = tomato.core.patch.state(model).source
    assert src.shape == (1, 197 - 8 * 12, 197)
    assert torch.equal(src.sum(dim=1), torch.ones(1, 197))  # each input token in one output


@torch.no_grad()
def test_probe_sees_what_block0_merges(vit, images):
    from tomato.core import pipeline, probe

    model = vit()
    b0 = probe.block0(model, images)
    assert b0.grid == (14, 14) and b0.attn.shape == (3, 3, 197, 197)
    settings = pipeline.Settings(sim=1e-20)
    expected = pipeline.merge_at_once(b0.x, settings, b0.grid, 1).merged
    tomato.core.patch.timm(model)
    model.sim = 1e-20
    model(images)
    st = tomato.core.patch.state(model)
    assert torch.equal(st.labels, expected.labels) and torch.equal(st.tokens, expected.counts)


@pytest.mark.parametrize("name, value", [("sim", -1.0), ("keep_ratio", 1.5), ("tokens", 0)])
def test_every_surface_refuses_a_setting_in_the_cores_words(vit, name, value):
    # One validator per setting (tomato.core.pipeline.check_setting): the model's
    # attribute, a variant spec, the CLI's checks and a notebook parameter say the same.
    from tomato.book import parameters
    from tomato.core import pipeline
    from tomato.harness import preflight, variants

    words = pipeline.ALLOWED[name].replace(" or None", "")
    said = []
    model = tomato.core.patch.timm(vit("deit_tiny_patch16_224"))
    for attempt in (lambda: setattr(model, name, value),
                    lambda: variants.parse(f"tomato:{name}={value}"),
                    lambda: preflight._tomato_setting(name)(f"--{name}", [value])):
        with pytest.raises(ValueError) as e:
            attempt()
        said.append(str(e.value))
    if name in parameters.RULES:
        with pytest.raises(parameters.Invalid) as e:
            parameters.check(name, value)
        said.append(str(e.value))
    assert all(words in s for s in said), said
