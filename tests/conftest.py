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


@pytest.fixture(scope="session")
def killed_when() -> Callable[..., None]:
    """``killed_when(command, ready, cwd, env)``: start ``command``, wait until ``ready()``
    (or it ends, or 300 s), then kill -9 it; fails the test when it ended before it could be
    killed."""
    return _killed_when


def _killed_when(command: list[str], ready: Callable[[], bool], cwd: Any, env: dict[str, str],
                 timeout: float = 300) -> None:
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
