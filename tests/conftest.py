"""Fixtures shared by every layer's tests."""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch


@pytest.fixture(scope="session")
def vit() -> Callable[..., torch.nn.Module]:
    """The one way tests build a model: ``vit(name="deit_tiny_patch16_224", seed=0,
    **timm_kwargs)`` -> a seeded random-init timm model in eval mode (no download)."""
    timm = pytest.importorskip("timm")

    def make(name: str = "deit_tiny_patch16_224", seed: int = 0, **kwargs: Any) -> torch.nn.Module:
        torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False, **kwargs).eval()
    return make
