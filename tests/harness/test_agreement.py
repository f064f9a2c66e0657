"""Partition agreement measures against hand-computed values."""
from __future__ import annotations

import pytest
import torch

from tomato.harness.agreement import adjusted_rand_index, identical_groups


def test_identical_partitions_score_one_whatever_the_label_values():
    a = torch.tensor([0, 0, 1, 1, 2])
    assert adjusted_rand_index(a, a + 7) == pytest.approx(1.0)
    assert identical_groups(a, torch.tensor([5, 5, 3, 3, 9])) == 1.0
    singletons = torch.arange(6)
    assert adjusted_rand_index(singletons, singletons) == 1.0
    assert adjusted_rand_index(torch.zeros(6), torch.zeros(6)) == 1.0


def test_known_ari_value():
    # Classic example: a = {0,1,2},{3,4,5}; b = {0,1},{2,3},{4,5}.
    # index = 1+0+1+... pairs together in both: (0,1),(4,5) -> 2; sum_a = 6, sum_b = 3,
    # total = 15, expected = 6*3/15 = 1.2, max = 4.5 -> ARI = 0.8/3.3.
    a = torch.tensor([0, 0, 0, 1, 1, 1])
    b = torch.tensor([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(a, b) == pytest.approx(0.8 / 3.3)
    assert identical_groups(a, b) == 0.0
    assert identical_groups(b, torch.tensor([0, 0, 1, 1, 1, 1])) == pytest.approx(1 / 3)


def test_opposite_trivial_partitions_disagree():
    assert adjusted_rand_index(torch.arange(5), torch.zeros(5)) == pytest.approx(0.0)


def test_method_agreement_on_real_photos(vit):

    from tomato.harness import data
    from tomato.harness.agreement import method_agreement

    model = vit("deit_tiny_patch16_224")
    samples = data.smoke_samples()[:3]
    rows = method_agreement(model, samples, sims=(float("inf"), 0.0), keep_ratios=(0.5,), progress=False)
    assert len(rows) == 9
    for r in rows:
        # the faithful groups sit between the 'both' and 'either' components
        assert r["tokens_both"] >= r["tokens_faithful"] >= r["tokens_either"]
        assert r["same_directed"]
        if r["setting"] in ("sim=inf", "sim=0.0"):  # trivial graphs: all methods agree
            assert r["ari_either"] == r["ari_both"] == 1.0 and r["identical_either"] == 1.0
        else:
            assert r["tokens_faithful"] <= 98
