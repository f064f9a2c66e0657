"""Counting what a forward asks of the device: aten operations and host syncs.

On a GPU every aten operation is (at most) one kernel launch, and every host sync stalls
the launch queue until the device catches up. Both counts are properties of the code
path, not of the machine, so they can be measured on CPU and asserted in tests.

* **aten ops**: every operation a :class:`~torch.utils._python_dispatch.TorchDispatchMode`
  sees below autograd, views included (a view launches no kernel, so this is an upper
  bound on launches).
* **host syncs**: every place where Python needs a value that lives on the device:
  ``aten._local_scalar_dense`` or ``aten.item`` (``.item()``, ``int()``, ``float()``, ``bool()`` of a
  tensor), ``aten.equal`` (``torch.equal``), operations whose output shape depends on
  the data (``nonzero``, ``masked_select``, ``unique``, boolean indexing), and the
  Python-level copies to the host ``.tolist()``, ``.cpu()``, ``.numpy()`` (which do not
  reach the dispatcher on a CPU tensor, so they are counted by wrapping the methods).
"""
from __future__ import annotations

import contextlib
import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["Counts", "count", "count_call"]

# Operators that make the host wait for the device (their result is read on the host,
# or the size of their output depends on the data).
_SYNC_OPS = {
    "aten._local_scalar_dense",
    "aten.item",  # what the mode sees of .item() under torch.inference_mode
    "aten.is_nonzero",
    "aten.equal",
    "aten.nonzero",
    "aten.nonzero_static",
    "aten.masked_select",
    "aten._unique2",
    "aten.unique_consecutive",
    "aten.unique_dim",
    "aten.repeat_interleave",
}
# Tensor methods that copy to the host without a dispatcher call on CPU tensors.
_HOST_METHODS = ("tolist", "cpu", "numpy")


@dataclass
class Counts:
    """ops: aten operations; syncs: host syncs; views: the ops among them that only
    re-describe a tensor (``unsqueeze``, ``expand``, ...: no kernel); by_op / by_sync:
    the breakdown by name."""

    ops: int = 0
    syncs: int = 0
    by_op: Counter = field(default_factory=Counter)
    by_sync: Counter = field(default_factory=Counter)
    views: int = 0

    @property
    def kernels(self) -> int:
        """Ops that may launch a kernel: all but the views."""
        return self.ops - self.views

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(self.ops - other.ops, self.syncs - other.syncs,
                      self.by_op - other.by_op, self.by_sync - other.by_sync,
                      self.views - other.views)


class _Mode(TorchDispatchMode):
    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.counts.ops += 1
        self.counts.views += int(func.is_view)
        self.counts.by_op[name] += 1
        if name in _SYNC_OPS:
            self.counts.syncs += 1
            self.counts.by_sync[name] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _host_copies(counts: Counts) -> Iterator[None]:
    """Count ``Tensor.tolist/.cpu/.numpy`` calls (only the outermost of nested ones)."""
    originals = {name: getattr(torch.Tensor, name) for name in _HOST_METHODS}
    depth = [0]

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def counted(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if depth[0] == 0:
                counts.syncs += 1
                counts.by_sync[f"Tensor.{name}"] += 1
            depth[0] += 1
            try:
                return fn(self, *args, **kwargs)
            finally:
                depth[0] -= 1
        return counted

    try:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, wrap(name, fn))
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


@contextlib.contextmanager
def count() -> Iterator[Counts]:
    """Count aten ops and host syncs of everything run inside the block.

    Not thread-safe (it patches ``torch.Tensor`` methods for the duration): measurement only.
    """
    counts = Counts()
    with _host_copies(counts), _Mode(counts):
        yield counts


def count_call(fn: Callable[[], Any]) -> Counts:
    """Counts of one call of ``fn``."""
    with count() as c:
        fn()
    return c
