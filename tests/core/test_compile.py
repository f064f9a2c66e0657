"""torch.compile on a patched model gives eager's tokens and logits (issue 13)."""
from __future__ import annotations

import pytest
import torch

import tomato
from tomato.harness import data

timm = pytest.importorskip("timm")


@pytest.mark.slow  # about two minutes of inductor compilation on a 2-core CPU
def test_compiled_patched_model_matches_eager(vit):
    model = vit("deit_tiny_patch16_224")
    tf = data.transform_for(model)
    images = torch.stack([tf(data.load_image(s.path)) for s in data.smoke_samples()[:2]])
    tomato.patch.timm(model)
    model.sim, model.method = 1e-7, "parallel"
    with torch.inference_mode():
        eager = model(images)
        tokens = tomato.patch.state(model).tokens.clone()
        compiled = torch.compile(model)(images)  # graph breaks where the merged length is read
    assert torch.equal(tomato.patch.state(model).tokens, tokens)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
