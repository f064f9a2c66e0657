"""The static-shape paths a deployment takes: compiled, CUDA-graphed, exported to ONNX.

A ToMato model in static mode (``model.tokens = k; model.static = True``) leaves its merge
block with exactly ``k`` patch tokens per image and, with ``method="parallel"``, makes no
host sync (:mod:`tomato.core.pipeline`), so it can take the paths a data-dependent token
count shuts it out of:

* :func:`compiled`: ``torch.compile(fullgraph=True)``, one graph per batch size;
* :func:`cuda_graphed`: the forward captured once in a CUDA graph and replayed;
* :func:`export_onnx` then :func:`onnx_runner`: ``torch.onnx.export`` (the torch.export
  path) run by ONNX Runtime on the CPU, as on a Jetson or a PC.

:func:`static_tomato` and :func:`keep_first` build the two models the benchmark sets
beside the unpatched one: ToMato in static mode and the oracle that simply keeps the
first ``k`` patch tokens after block 0 (the cost floor of any model that keeps ``k``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..core import patch

__all__ = ["static_tomato", "keep_first", "keep_tokens", "compiled", "cuda_graphed", "export_onnx", "onnx_runner"]


def static_tomato(model: nn.Module, tokens: int, method: str = "parallel") -> nn.Module:
    """A ToMato copy of the unpatched ``model`` that keeps exactly ``tokens`` patch tokens."""
    m = patch.timm(copy.deepcopy(model))
    m.method, m.tokens, m.static = method, tokens, True
    return m


class _KeepFirst(nn.Module):
    """Block 0, then only its prefix tokens and first ``k`` patch tokens. A module rather
    than a forward hook, so that torch.compile and torch.export both see the cut."""

    def __init__(self, block: nn.Module, k: int, num_prefix: int) -> None:
        super().__init__()
        self.block, self.keep = block, num_prefix + k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)[:, : self.keep]


def keep_first(model: nn.Module, tokens: int) -> nn.Module:
    """The oracle: a copy of ``model`` whose block 0 hands on only the prefix tokens and
    the first ``tokens`` patch tokens. (B, 3, H, W) -> logits."""
    m = copy.deepcopy(model)
    m.blocks[0] = _KeepFirst(m.blocks[0], tokens, m.num_prefix_tokens)
    return m


def keep_tokens(oracle: nn.Module, tokens: int) -> None:
    """Make an oracle of :func:`keep_first` keep ``tokens`` patch tokens from its next call on
    (an attribute store: a benchmark sets it per batch without copying the model)."""
    oracle.blocks[0].keep = oracle.num_prefix_tokens + tokens


def compiled(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model, fullgraph=True)``: any graph break is an error, not a split."""
    return torch.compile(model, fullgraph=True)


def cuda_graphed(model: nn.Module, images: torch.Tensor, warmup: int = 3) -> Callable[[], torch.Tensor]:
    """Capture ``model(images)`` (on CUDA) in a CUDA graph; the returned callable replays
    it on the same input buffer and returns the output buffer (B, classes).

    Capture needs a forward with fixed shapes and no host sync: an unpatched model, the
    oracle, or ToMato in static mode with ``method="parallel"``."""
    if images.device.type != "cuda":
        raise ValueError("CUDA graphs need the model and images on a CUDA device")
    static_in = images.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(warmup):  # lazy initialisation must happen before capture
            model(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_out = model(static_in)

    def replay() -> torch.Tensor:
        graph.replay()
        return static_out
    return replay


def export_onnx(model: nn.Module, images: torch.Tensor, path: str | Path) -> Path:
    """Export ``model`` at the batch size of ``images`` (B, 3, H, W) to ONNX at ``path``.

    Uses torch's torch.export-based exporter (it needs the ``onnx`` and ``onnxscript``
    packages: ``pip install -e '.[deploy]'``). Raises ValueError with one line when they
    are missing."""
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            raise ValueError(f"ONNX export needs the {module!r} package: pip install -e '.[deploy]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(model.eval(), (images,), dynamo=True, verbose=False)
    program.save(str(path))
    return path


def onnx_runner(path: str | Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime CPU session for the model at ``path``: (B, 3, H, W) float32 array ->
    logits array. ``threads``: intra-op threads (default: torch's, so that rows compare)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("running ONNX needs the 'onnxruntime' package: pip install -e '.[deploy]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    # ORT's threads spin-wait after a run by default, which steals the cores from whatever
    # is timed next in an interleaved benchmark.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(images: np.ndarray) -> np.ndarray:
        return session.run(None, {name: images})[0]
    return run
