"""Merging groups into tokens: sizes, sums, prefix tokens, padding."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tomato.core import pipeline, merge, visit


@st.composite
def merge_cases(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    b, p, c = draw(st.integers(1, 3)), draw(st.integers(0, 2)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    sim = draw(st.sampled_from([0.0, 1e-30, 1e-7, 1e-3, 0.2, float("inf")]))
    method = draw(st.sampled_from(visit.METHODS))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, p + h * w, c, generator=g, dtype=torch.float64)
    return x, (h, w), p, sim, method


@settings(max_examples=80, deadline=None)
@given(merge_cases())
def test_merge_preserves_sizes_sums_and_prefix(case):
    x, grid, p, sim, method = case
    step = pipeline.merge_at_once(x, pipeline.Settings(sim=sim, method=method), grid, p)
    m = step.merged
    n = grid[0] * grid[1]
    real = merge.padding_mask(m.counts, p)
    # Sizes: prefix tokens 1, groups sum to the patch count, padding exactly 0.
    assert torch.equal(m.size[:, :p, 0], torch.ones_like(m.size[:, :p, 0]))
    assert torch.allclose(m.size[:, p:, 0].sum(dim=1), torch.full((x.shape[0],), float(n), dtype=m.size.dtype))
    assert (m.size[..., 0][~real] == 0).all() and (m.size[..., 0][real] >= 1).all()
    # Size-weighted sum of merged tokens equals the sum of the original patch tokens.
    assert torch.allclose((m.x[:, p:] * m.size[:, p:]).sum(dim=1), x[:, p:].sum(dim=1), atol=1e-9)
    # Prefix tokens pass through untouched, in place.
    assert torch.equal(m.x[:, :p], x[:, :p])
    # Every merged token is the mean of its members.
    for b in range(x.shape[0]):
        for gid in range(int(m.counts[b])):
            members = x[b, p:][m.labels[b] == gid]
            assert torch.allclose(m.x[b, p + gid], members.mean(dim=0), atol=1e-9)


def test_sim_extremes_merge_all_or_nothing():
    torch.manual_seed(0)
    x = torch.randn(2, 1 + 16, 8)
    none = pipeline.merge_at_once(x, pipeline.Settings(sim=float("inf")), (4, 4), 1).merged
    assert torch.equal(none.x, x) and none.counts.tolist() == [16, 16]
    one = pipeline.merge_at_once(x, pipeline.Settings(sim=0.0), (4, 4), 1).merged
    assert one.x.shape == (2, 2, 8) and one.counts.tolist() == [1, 1]
    assert torch.allclose(one.x[:, 1], x[:, 1:].mean(dim=1), atol=1e-6)


def test_unmerge_spreads_group_values_back():
    labels = torch.tensor([[0, 0, 1, 2]])
    vals = torch.tensor([[10.0, 20.0, 30.0]])
    assert merge.unmerge(vals, labels).tolist() == [[10.0, 10.0, 20.0, 30.0]]


def test_labels_shape_mismatch_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="patch tokens"):
        merge.merge_groups(torch.zeros(1, 5, 2), torch.zeros(1, 3, dtype=torch.long), torch.tensor([1]), 1)


def test_settings_validation():
    import pytest

    for bad, match in [
        (dict(sim=float("nan")), "got nan"),
        (dict(sim=-1.0), ">= 0"),
        (dict(sim="1e-7"), "number"),
        (dict(keep_ratio=0.0), "keep_ratio"),
        (dict(keep_ratio=1.01), "keep_ratio"),
        (dict(method="bfs"), "method"),
        (dict(metric="cosines"), "metric"),
        (dict(block=-1), "block"),
        (dict(block=1.0), "block"),
        (dict(rule="any"), "rule"),
        (dict(keep_ratio=0.5, tokens=3), "not both"),
    ]:
        with pytest.raises(ValueError, match=match):
            pipeline.Settings(**bad).validate()
