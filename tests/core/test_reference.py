"""The core's fast merge step computes exactly the paper's merge, as stated plainly in
tomato.core.reference: the same groups, means and sizes, faithful and parallel."""
from __future__ import annotations

import pytest
import torch

from tomato.core import pipeline, probe, reference
from tomato.harness import data

timm = pytest.importorskip("timm")


def _agree(x: torch.Tensor, sim: float, grid: tuple[int, int], p: int) -> int:
    want, want_size = reference.merge(x, sim, grid, p)
    for method in ("faithful", "parallel"):
        step = pipeline.merge_at_once(x, pipeline.Settings(sim=sim, method=method), grid, p)
        got = step.merged
        assert got.x.shape == want.shape, (method, sim)
        torch.testing.assert_close(got.x, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.size.float(), want_size)
    return want.shape[1] - p


@pytest.mark.parametrize("seed", range(4))
def test_random_features(seed):
    g = torch.Generator().manual_seed(seed)
    grid, p = (6, 7), 1
    x = torch.randn(1, p + 42, 8, generator=g) * 2
    groups = [_agree(x, sim, grid, p) for sim in (0.5, 1e-2, 1e-4, 1e-7, 0.0)]
    assert groups == sorted(groups, reverse=True) and groups[-1] == 1  # lower sim merges more


def test_real_block0_features(vit):
    model = vit("deit_tiny_distilled_patch16_224")
    tf = data.transform_for(model)
    with torch.inference_mode():
        for s in data.smoke_samples()[:3]:
            x = probe.block0(model, tf(data.load_image(s.path))[None]).x
            kept = [_agree(x, sim, (14, 14), model.num_prefix_tokens) for sim in (1e-7, 1e-3)]
            assert kept[0] < 196
