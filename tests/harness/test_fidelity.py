"""Fidelity measures and null baselines (tomato.harness.fidelity) on a tiny seeded ViT."""
from __future__ import annotations

import math

import pytest
import torch

from tomato.core import attention, merge, probe
from tomato.harness import fidelity

IMG = 96  # 6 x 6 patch grid: fast on CPU, still a grid with interior tokens


@pytest.fixture(scope="module")
def model(vit):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = vit("deit_tiny_patch16_224", img_size=IMG)
    return m.eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, IMG, IMG, generator=g)


def close(a: fidelity.Outputs, b: fidelity.Outputs) -> bool:
    return torch.allclose(a.logits, b.logits, atol=1e-4) and torch.allclose(a.features, b.features, atol=1e-4)


# ------------------------------------------------------------------ measures
def test_kl_and_cosine_of_identical_outputs():
    x = torch.randn(4, 10)
    assert torch.equal(fidelity.kl_divergence(x, x), torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(fidelity.cosine(x, x), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(fidelity.cosine(x, -x), -torch.ones(4, dtype=torch.float64))
    # Shifting logits by a constant leaves the distribution alone; scaling features keeps direction.
    assert torch.allclose(fidelity.kl_divergence(x, x + 3.0), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(fidelity.cosine(x, 5 * x), torch.ones(4, dtype=torch.float64))


def test_kl_known_value_and_direction():
    p = torch.tensor([[math.log(0.5), math.log(0.5)]], dtype=torch.float64)
    q = torch.tensor([[math.log(0.9), math.log(0.1)]], dtype=torch.float64)
    want = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert fidelity.kl_divergence(p, q).item() == pytest.approx(want, rel=1e-9)
    assert fidelity.kl_divergence(q, p).item() != pytest.approx(want, rel=1e-3)  # KL(p||q), not symmetric


# ------------------------------------------------------------------ null groupings
def test_random_groups_keep_sizes_and_follow_the_generator():
    labels = torch.tensor([[0, 0, 0, 1, 1, 2, 3, 3, 3, 3], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    counts = torch.tensor([4, 10])
    a = fidelity.random_group_labels(labels, counts, torch.Generator().manual_seed(0))
    b = fidelity.random_group_labels(labels, counts, torch.Generator().manual_seed(0))
    c = fidelity.random_group_labels(labels, counts, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for i in range(2):
        assert torch.equal(torch.bincount(a[i], minlength=int(counts[i])),
                           torch.bincount(labels[i], minlength=int(counts[i])))


def test_keep_masks_and_groups():
    g = torch.Generator().manual_seed(0)
    k = torch.tensor([3, 10, 0])
    keep = fidelity.random_keep(10, k, g)
    assert keep.sum(1).tolist() == [3, 10, 0]
    first = fidelity.first_keep(10, k)
    assert first[0].tolist() == [True] * 3 + [False] * 7
    labels, counts, size = fidelity.keep_groups(first, 1)
    assert counts.tolist() == [4, 10, 1]  # k singletons + one size-0 discard group
    assert labels[0].tolist() == [0, 1, 2] + [3] * 7
    assert size[0, :, 0].tolist() == [1.0] * 4 + [0.0] * 7


def test_tome_r_for_tokens():
    assert fidelity.tome_r_for_tokens(196, 12, 196.0) == 0
    r = fidelity.tome_r_for_tokens(196, 12, 0.7 * 196)
    # mean tokens after each block's merge is 197 - r * 6.5 for this r: within half a step
    assert abs((197 - r * 6.5) - (0.7 * 196 + 1)) <= 6.5 / 2


# ------------------------------------------------------------------ forwards
def test_singleton_groups_equal_the_unpatched_model(model, images):
    base = fidelity.plain_outputs(model, images)
    n = (IMG // 16) ** 2
    labels = torch.arange(n).expand(images.shape[0], n).clone()
    counts = torch.full((images.shape[0],), n)
    assert close(fidelity.grouped_outputs(model, images, labels, counts), base)
    # the null baseline "random groups" with every size 1 is the unpatched model too
    rg = fidelity.random_group_labels(labels, counts, torch.Generator().manual_seed(3))
    out = fidelity.grouped_outputs(model, images, rg, counts)
    assert close(out, base)
    assert torch.allclose(fidelity.kl_divergence(base.logits, out.logits), torch.zeros(3, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(fidelity.cosine(base.features, out.features), torch.ones(3, dtype=torch.float64), atol=1e-6)
    # keeping all tokens is the unpatched model as well
    keep = fidelity.first_keep(n, counts)
    assert close(fidelity.grouped_outputs(model, images, *fidelity.keep_groups(keep, 1)), base)


def test_grouped_forward_reproduces_the_patched_tomato_model(model, images):
    tom, st = fidelity.patched_outputs(model, images, "tomato", keep_ratio=0.5)
    assert not hasattr(model, "_tomato")  # unpatched again
    again = fidelity.grouped_outputs(model, images, st.labels, st.tokens)
    assert close(again, tom)
    assert torch.equal(again.tokens, tom.tokens)
    assert int(tom.tokens.max()) <= 18
    base = fidelity.plain_outputs(model, images)
    assert not close(tom, base)  # merging half the tokens does move the output


def test_dropped_tokens_are_gone_after_block0(model, images):
    """keep_groups must equal running the later blocks on the kept tokens alone."""
    n = (IMG // 16) ** 2
    g = torch.Generator().manual_seed(5)
    keep = fidelity.random_keep(n, torch.tensor([20, 20, 20]), g)
    out = fidelity.grouped_outputs(model, images, *fidelity.keep_groups(keep, 1))
    assert out.tokens.tolist() == [20, 20, 20]
    with torch.inference_mode():
        b0 = probe.block0(model, images)
        idx = torch.stack([torch.nonzero(k).flatten() for k in keep]) + 1
        x = torch.cat([b0.x[:, :1], b0.x.gather(1, idx.unsqueeze(-1).expand(-1, -1, b0.x.shape[2]))], 1)
        blk = model.blocks[0]
        x = x + blk.mlp(blk.norm2(x))
        for blk in model.blocks[1:]:
            x = x + attention.forward(blk.attn, blk.norm1(x)).x
            x = x + blk.mlp(blk.norm2(x))
        want = model.forward_head(model.norm(x))
    assert torch.allclose(out.logits, want, atol=1e-4)


def test_merge_is_the_cores(model, images, monkeypatch):
    """The null baselines go through tomato.core.merge.merge_groups (one merge, not a copy)."""
    calls = []
    real = merge.merge_groups
    monkeypatch.setattr(merge, "merge_groups", lambda *a, **k: calls.append(1) or real(*a, **k))
    n = (IMG // 16) ** 2
    fidelity.grouped_outputs(model, images, torch.zeros(3, n, dtype=torch.long), torch.ones(3, dtype=torch.long))
    assert calls == [1]


def test_compare_batch_rows(model, images):
    base, rows = fidelity.compare_batch(model, images, [("keep_ratio", 0.5)], torch.Generator().manual_seed(0))
    variants = {r["variant"] for r in rows}
    assert variants == {"tomato", "tome", *fidelity.NULLS}
    by = {(r["variant"], r["batch_row"]): r for r in rows}
    for j in range(3):
        k = by[("tomato", j)]["tokens"]
        for name in fidelity.NULLS:  # same per-image token budget as ToMato
            assert by[(name, j)]["tokens"] == k
        for name in variants:
            assert by[(name, j)]["kl"] >= 0 and -1 <= by[(name, j)]["cosine"] <= 1 + 1e-9
    summary = fidelity.summarise(rows)
    assert {s["variant"] for s in summary} == variants
    assert all(s["n"] == 3 for s in summary)
    tomato_tokens = next(s["tokens_mean"] for s in summary if s["variant"] == "tomato")
    tome = next(s for s in summary if s["variant"] == "tome")
    assert tome["tome_r"] > 0 and abs(tome["tokens_mean"] - tomato_tokens) <= 3.5  # equal tokens, +- r/2
    preds = base.logits.argmax(-1).tolist()
    text = fidelity.format_summary({"summary": summary, "baseline": fidelity.prediction_diversity(preds)})
    assert "random_groups" in text and "distinct predictions" in text


def test_compare_batch_refuses_a_patched_model(model, images):
    from tomato.core import patch

    patch.timm(model)
    try:
        with pytest.raises(ValueError, match="plain timm model"):
            fidelity.plain_outputs(model, images)
    finally:
        patch.remove(model)


# ------------------------------------------------------------------ diversity
def test_prediction_diversity():
    one = fidelity.prediction_diversity([7] * 50, list(range(50)))
    assert one["distinct"] == 1 and one["entropy_bits"] == 0 and one["degenerate"]
    varied = fidelity.prediction_diversity(list(range(50)), list(range(50)))
    assert varied["distinct"] == 50 and not varied["degenerate"]
    assert varied["entropy_bits"] == pytest.approx(math.log2(50))
    skewed = fidelity.prediction_diversity([0] * 10 + list(range(1, 41)), list(range(50)))
    assert skewed["top_share"] == pytest.approx(0.2) and skewed["degenerate"]  # one class > 10%
    few = fidelity.prediction_diversity([i % 4 for i in range(100)], list(range(100)))
    assert few["degenerate"]  # 4 distinct classes for 100 classes seen (and 25% each)
    # a ten-class head (Imagenette): its top class taking 12% is no sign of collapse, 25% is
    labels = [i % 10 for i in range(100)]
    ten = fidelity.prediction_diversity([0, 0] + [i % 10 for i in range(98)], labels)
    assert ten["top_share"] == pytest.approx(0.12) and not ten["degenerate"]
    lopsided = fidelity.prediction_diversity([0] * 25 + [1 + i % 9 for i in range(75)], labels)
    assert lopsided["degenerate"] and "more than 20%" in lopsided["reasons"][0]
    # a record written under the old rule (top class over 10%, whatever the head) is read by today's
    old = {"n": 3925, "distinct": 10, "top_share": 0.12, "classes_seen": 10, "degenerate": True,
           "reasons": ["one class takes 12.0% of the predictions (more than 10%)"]}
    assert fidelity.degenerate_reasons(old) == []
    assert fidelity.degenerate_reasons({"degenerate": True}) == ["recorded as degenerate"]
    # few classes seen: twice the even share is capped at half, so one class for all is still flagged
    assert fidelity.prediction_diversity([5] * 20, [0] * 20)["degenerate"]
    assert fidelity.prediction_diversity([5] * 20, [])["degenerate"]  # no labels given: no division by zero
    with pytest.raises(ValueError):
        fidelity.prediction_diversity([])


def test_spread_covers_the_folder():
    items = list(range(1000))
    assert fidelity.spread(items, 100) == list(range(0, 1000, 10))
    assert fidelity.spread(items, None) == items and fidelity.spread(items[:5], 100) == items[:5]
