"""The ToMe baseline (tomato.core.tome) on small inputs worked out by hand."""
from __future__ import annotations


import pytest
import torch

import tomato
from tomato.core import tome


def tokens(*values: float) -> torch.Tensor:
    """(1, T, 1) tokens holding one number each, easy to follow through a merge."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1)


def keys(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).unsqueeze(0)


# Five tokens, class token first. Sides: A = {0, 2, 4}, B = {1, 3}.
#   token 0 (class) has the same key as token 1 but is protected;
#   token 2 = (0, 1): cosine 0 with token 1, 1 with token 3 -> partner 3, strength 1;
#   token 4 = (1, 2): cosine 1/sqrt(5) with 1, 2/sqrt(5) with 3 -> partner 3, strength 0.894.
FIVE = keys((1, 0), (1, 0), (0, 1), (0, 1), (1, 2))
X5 = tokens(10, 20, 30, 40, 50)


def test_r1_merges_the_strongest_edge_and_keeps_the_output_order():
    m = tome.match(FIVE, 1, num_prefix_tokens=1)
    # Output: class, the A survivors (4), then side B (1, 3 holding 2).
    assert m.out_tokens == 4 and m.slot.tolist() == [[0, 2, 3, 3, 1]]
    x, size = tome.merge(m, X5)
    assert x.flatten().tolist() == [10, 50, 20, 35]
    assert size.flatten().tolist() == [1, 1, 1, 2]


def test_r2_folds_two_tokens_into_one_partner():
    m = tome.match(FIVE, 2, num_prefix_tokens=1)
    x, size = tome.merge(m, X5)
    assert x.flatten().tolist() == [10, 20, 40]  # (30 + 40 + 50) / 3
    assert size.flatten().tolist() == [1, 1, 3]


def test_r_is_capped_at_half_the_mergeable_tokens_and_the_class_token_stays():
    m = tome.match(FIVE, 4, num_prefix_tokens=1)  # (5 - 1) // 2 = 2
    assert m.out_tokens == 3
    x, _ = tome.merge(m, X5)
    assert x[0, 0, 0] == 10  # the class token kept its own value despite its twin key
    assert tome.match(FIVE, 0).out_tokens == 5


def test_merge_weighs_by_size():
    m = tome.match(FIVE, 1, num_prefix_tokens=1)
    size = torch.tensor([1.0, 1, 3, 1, 1]).view(1, 5, 1)
    x, new_size = tome.merge(m, X5, size)
    assert x.flatten().tolist() == [10, 50, 20, 32.5]  # (3 * 30 + 40) / 4
    assert new_size.flatten().tolist() == [1, 1, 1, 4]
    assert torch.allclose((x * new_size).sum(1), (X5 * size).sum(1))


def test_distillation_token_is_protected_and_stays_at_index_1():
    # Six tokens: A = {0 class, 2, 4}, B = {1 distillation, 3, 5}. Token 2 has the
    # distillation token's key (cosine 1) but may only join 3 (0.6) or 5 (0); token 4
    # joins 5 (cosine 1).
    k = keys((1, 0), (1, 0), (1, 0), (0.6, 0.8), (0, 1), (0, 1))
    x = tokens(1, 2, 30, 40, 50, 60)
    out, size = tome.merge(tome.match(k, 1, num_prefix_tokens=2), x)
    assert out.flatten().tolist() == [1, 2, 30, 40, 55]
    out, size = tome.merge(tome.match(k, 2, num_prefix_tokens=2), x)
    assert out.flatten().tolist() == [1, 2, 35, 55]
    assert size.flatten().tolist() == [1, 1, 2, 2]


def test_ties_break_towards_lower_positions():
    # Seven tokens: A = {0, 2, 4, 6}, B = {1, 3, 5}. Tokens 2 and 4 are equally close
    # (cosine 1/sqrt 2) to tokens 1 and 3: each takes token 1, and token 2 leaves first.
    # Token 6 = (0, -1) scores 0 with both 1 and 5: it would take token 1.
    k = keys((0, 1), (1, 0), (1, 1), (0, 1), (1, 1), (-1, 0), (0, -1))
    x = tokens(0, 10, 20, 30, 40, 50, 60)
    m = tome.match(k, 1, num_prefix_tokens=1)
    out, _ = tome.merge(m, x)
    assert out.flatten().tolist() == [0, 40, 60, 15, 30, 50]
    out, size = tome.merge(tome.match(k, 3, num_prefix_tokens=1), x)
    assert out.flatten().tolist() == [0, 32.5, 30, 50]  # (10 + 20 + 40 + 60) / 4
    assert size.flatten().tolist() == [1, 4, 1, 1]


def test_source_tracks_which_input_tokens_each_token_holds():
    m1 = tome.match(FIVE, 1, num_prefix_tokens=1)
    src = tome.track_source(m1)
    assert src.tolist() == [[[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 1, 1, 0]]]
    # A second step on those 4 tokens: token 2 (input 1) joins token 3 (inputs 2, 3).
    m2 = tome.match(keys((1, 0), (0, 1), (1, 0), (1, 0)), 1, num_prefix_tokens=1)
    src = tome.track_source(m2, src)
    assert src.tolist() == [[[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 1, 1, 0]]]


def test_merge_keeps_batches_apart():
    torch.manual_seed(0)
    k, x = torch.randn(4, 17, 8), torch.randn(4, 17, 5)
    m = tome.match(k, 5)
    out, size = tome.merge(m, x)
    for i in range(4):
        one, one_size = tome.merge(tome.match(k[i : i + 1], 5), x[i : i + 1])
        assert torch.equal(one_size, size[i : i + 1]) and torch.allclose(one, out[i : i + 1])
    assert torch.allclose(out[:, 0], x[:, 0]) and (size.sum(dim=1) == 17).all()


# ---------------------------------------------------------------- r in all its forms


@pytest.mark.parametrize(
    "r,depth,expected",
    [
        (2, 3, [2, 2, 2]),
        ([1, 2], 4, [1, 2, 0, 0]),  # short lists are padded with zeros
        ([1, 2, 3], 3, [1, 2, 3]),
        ((4, 0), 3, [4, 4, 4]),  # inflection 0: constant
        ((3, -1), 4, [6, 4, 2, 0]),  # decreasing: 2r down to 0
        ((4, 1), 5, [0, 2, 4, 6, 8]),  # increasing: 0 up to 2r
        ((2, 0.5), 3, [1, 2, 3]),  # first int(2 * 0.5) = 1, last 2 * 2 - 1 = 3
        # 8, then 8 - 8 i / 11 rounded down: the ramp never dips below 0
        ((4, -1), 12, [8, 7, 6, 5, 5, 4, 3, 2, 2, 1, 0, 0]),
        ((4, -1), 1, [4]),
    ],
)
def test_per_block_r(r, depth, expected):
    assert tome.per_block_r(r, depth) == expected


@pytest.mark.parametrize("bad", [2.5, -1, "2", True, None, (2,), (2, 3), (2.0, 0), (2, True), [1, -1], [1.0], "12"])
def test_per_block_r_refuses_what_tome_does_not_take(bad):
    with pytest.raises(ValueError, match=r"r = .* is not allowed: r must be an int >= 0"):
        tome.per_block_r(bad, 12)
    with pytest.raises(ValueError, match="model has 3"):
        tome.per_block_r([1, 1, 1, 1], 3)


# ---------------------------------------------------------------- on a model




@torch.no_grad()
def test_model_r_takes_a_schedule_and_a_short_list(vit):
    model = tomato.core.patch.tome(vit())
    x = torch.randn(1, 3, 224, 224)
    model.r = (8, -1)
    model(x)
    st = tomato.core.patch.state(model)
    assert model.r == tome.per_block_r((8, -1), 12)
    expected, t = [], 197
    for r in model.r:
        t -= min(r, (t - 1) // 2)
        expected.append(t)
    assert st.tokens_per_block == expected and st.tokens.tolist() == [t - 1]
    model.r = [16]
    model(x)
    assert st.tokens_per_block == [181] * 12


@torch.no_grad()
def test_prop_attn_switch(vit):
    model = tomato.core.patch.tome(vit(), prop_attn=False)
    x = torch.randn(2, 3, 224, 224)
    assert model.prop_attn is False
    model.r = 8
    without = model(x)
    model.prop_attn = True
    with_ = model(x)
    assert not torch.allclose(without, with_, atol=1e-4)  # sizes reach the attention
    model.r = 0  # no merge, every size 1: the switch changes nothing
    assert torch.allclose(model(x), vit()(x), atol=1e-5)
    model.prop_attn = False
    assert torch.allclose(model(x), vit()(x), atol=1e-5)
    with pytest.raises(ValueError, match=r"model.prop_attn = 1 is not allowed: prop_attn must be True or False"):
        model.prop_attn = 1
    with pytest.raises(ValueError, match="prop_attn"):
        tomato.core.patch.tome(vit(), prop_attn="yes")
