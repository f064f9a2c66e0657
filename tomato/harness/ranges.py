"""NVTX ranges for Nsight Systems, named as in the ToMato authors' own profiles.

The authors timed the paper's latency with ``nsys profile`` on a Jetson Nano's CPU and
wrapped every forward in an NVTX range ``Forward i``; inside it each block is a
``decoder`` range holding ``attention`` and ``feed forward``, the patch embedding is
``patch embedding``, and the merge step in block 0 is ``ToME`` (decoded from their
reports in the ToMato reference repository, commit da7519793de2; see
:mod:`tomato.book.paper`). :func:`paper_ranges` puts the same names on a timm ViT here,
so a report of ours can be read side by side with theirs.

A CPU run needs an NVTX binding that does not go through CUDA: the ``nvtx`` package
(``pip install nvtx``) is used when installed, else ``torch.cuda.nvtx`` when CUDA is
available, else nothing (every range is then a no-op that costs a function call).
Ranges are also timed with a wall clock (:class:`StageTimes`), which is how the merge
step's share of a forward is measured without a profiler.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core import patch

__all__ = ["Binding", "find_binding", "nvtx_range", "StageTimes", "paper_ranges", "STAGE_NAMES"]

#: Stage names the patched blocks pass to ``State.ranges`` -> the authors' range names.
#: Their merge range is ``ToME`` (their ToMato code grew from ToMe's); ToMe's own merge in
#: every block gets the same name, so "the merge step" reads alike for both methods.
STAGE_NAMES: dict[str, str] = {"attention": "attention", "tomato.merge": "ToME", "tome.merge": "ToME",
                               "mlp": "feed forward"}
MERGE_RANGE = "ToME"
BLOCK_RANGE = "decoder"
EMBED_RANGE = "patch embedding"


def _noop(*_: object) -> None:
    return None


@dataclass(frozen=True)
class Binding:
    """How ranges reach the profiler: ``name`` says which binding, ``push``/``pop`` act."""

    name: str
    push: Callable[[str], None] = _noop
    pop: Callable[[], None] = _noop


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:  # imported from a path, not installed
        return ""


def find_binding() -> Binding:
    """The ``nvtx`` package if installed, else ``torch.cuda.nvtx`` with CUDA, else no-op.

    Resolve it once per measurement and pass it on: looking a missing package up again for
    each of the ~40 ranges of a forward would cost more than the ranges themselves.
    """
    try:
        mod = importlib.import_module("nvtx")
        return Binding(f"nvtx {_version('nvtx')}".strip(), lambda name: mod.push_range(name),
                       lambda: mod.pop_range())
    except ImportError:
        pass
    if torch.cuda.is_available():
        try:
            nv = torch.cuda.nvtx
            return Binding("torch.cuda.nvtx", nv.range_push, lambda: nv.range_pop())
        except (AttributeError, RuntimeError):  # torch built without NVTX
            pass
    return Binding("none (no NVTX binding: ranges are no-ops)")


@contextlib.contextmanager
def nvtx_range(name: str, binding: Binding | None = None) -> Iterator[None]:
    """One named range around the ``with`` body; popped even when the body raises."""
    b = binding or find_binding()
    b.push(name)
    try:
        yield
    finally:
        b.pop()


@dataclass
class StageTimes:
    """Wall-clock seconds per range name within the current forward (``reset`` between).

    ``sync`` waits for queued device work at both ends of a stage, so a CUDA stage is
    charged its kernels; on CPU it is a no-op.
    """

    binding: Binding
    sync: Callable[[], None] = _noop
    clock: Callable[[], float] = time.perf_counter
    seconds: dict[str, float] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget the previous forward's stage times."""
        self.seconds = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.sync()
        self.binding.push(name)
        t0 = self.clock()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - t0
            self.binding.pop()


def _hook(module: nn.Module, name: str, stages: StageTimes) -> list[torch.utils.hooks.RemovableHandle]:
    """Open range ``name`` before ``module`` runs and close it after (via forward hooks)."""
    box: dict[str, contextlib.ExitStack] = {}

    def before(*_: object) -> None:
        box["stack"] = stack = contextlib.ExitStack()
        stack.enter_context(stages(name))

    def after(*_: object) -> None:
        stack = box.pop("stack", None)
        if stack is not None:
            stack.close()

    return [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


@contextlib.contextmanager
def paper_ranges(model: nn.Module, stages: StageTimes) -> Iterator[StageTimes]:
    """Name ``model``'s stages as the authors' profiles do while the ``with`` body runs.

    ``patch embedding`` and one ``decoder`` range per block come from forward hooks. A
    model patched by :mod:`tomato.core.patch` reports ``attention``, the merge (``ToME``,
    as the authors named theirs) and ``feed forward`` through its ``State.ranges`` hook,
    because its blocks call attention as a function; an unpatched model gets hooks on
    ``attn`` and ``mlp`` instead. Everything is removed on exit. Apply the variant first:
    re-patching replaces the state that holds the hook.
    """
    handles = _hook(model.patch_embed, EMBED_RANGE, stages)
    st = patch.state(model, None)
    for blk in model.blocks:
        handles += _hook(blk, BLOCK_RANGE, stages)
        if st is None:
            handles += _hook(blk.attn, STAGE_NAMES["attention"], stages)
            handles += _hook(blk.mlp, STAGE_NAMES["mlp"], stages)
    if st is not None:
        st.ranges = lambda stage: stages(STAGE_NAMES.get(stage, stage))
    try:
        yield stages
    finally:
        for h in handles:
            h.remove()
        if st is not None:
            st.ranges = None
