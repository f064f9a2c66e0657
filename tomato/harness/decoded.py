"""Photos decoded once and kept in memory, served in fixed batches to every pass of a recording.

Decoding and resizing a JPEG costs about as much as a small ViT's forward on it, so a
recording that runs fifty variants over the same photos decodes them once
(:meth:`Photos.decode`) and every pass reads :meth:`Photos.batches`. Batches are fixed
chunks of the photo list (photos ``[k*B, (k+1)*B)``), whatever was done before: a pass
that was killed and resumed sees the same batches as one that ran through, so even a
result that depends on the batch's make-up comes out the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Iterator, List, Sequence, Tuple

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import data

__all__ = ["Photos"]

#: One batch as :func:`tomato.harness.data.collate_skip_bad` gives it:
#: images (B, 3, H, W), labels (B,), indices (B,), the photos of the chunk that could not be read.
Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List]


@dataclass
class Photos:
    """``images[j]`` is photo ``indices[j]`` of ``samples``, preprocessed for the model.

    images: (M, 3, H, W) float32; labels, indices: (M,) int64; bad: the
    :class:`tomato.harness.data.BadSample` of every photo that could not be read.
    """

    samples: Sequence[data.Sample]
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    bad: list = field(default_factory=list)

    @classmethod
    def decode(cls, samples: Sequence[data.Sample], transform: Callable, workers: int = 2,
               progress: bool = True) -> Photos:
        """Read and preprocess every photo of ``samples`` once (``workers`` processes)."""
        loader = DataLoader(data.ImageNetFolder(list(samples), transform), batch_size=64,
                            num_workers=workers, collate_fn=data.collate_skip_bad)
        images, labels, indices, bad = [], [], [], []
        for x, y, i, b in tqdm(loader, disable=not progress, desc="decoding photos", unit="batch"):
            if len(i):
                images.append(x)
                labels.append(y)
                indices.append(i)
            bad += b
        if not images:
            raise ValueError(f"none of the {len(samples)} photos could be read (e.g. {bad[0].path}: {bad[0].error})"
                             if bad else "no photos to decode")
        return cls(list(samples), torch.cat(images), torch.cat(labels), torch.cat(indices), bad)

    def subset(self, keep: Collection[int]) -> Photos:
        """The photos whose sample index is in ``keep`` (indices stay those of ``samples``)."""
        keep = set(keep)
        rows = torch.isin(self.indices, torch.tensor(sorted(keep), dtype=torch.long))
        return Photos(self.samples, self.images[rows], self.labels[rows], self.indices[rows],
                      [b for b in self.bad if b.index in keep])

    def batches(self, size: int, skip: Collection[int] = ()) -> Iterator[Batch]:
        """Fixed chunks of ``size`` consecutive photos (by position among the photos held,
        bad ones counted where they fall), leaving out the sample indices in ``skip``."""
        skip = set(skip)
        order = sorted([(int(i), j) for j, i in enumerate(self.indices.tolist())]
                       + [(b.index, None) for b in self.bad])
        for start in range(0, len(order), size):
            chunk = [(i, j) for i, j in order[start:start + size] if i not in skip]
            if not chunk:
                continue
            rows = torch.tensor([j for _, j in chunk if j is not None], dtype=torch.long)
            unread = {i for i, j in chunk if j is None}
            bad = [b for b in self.bad if b.index in unread]
            yield self.images[rows], self.labels[rows], self.indices[rows], bad

    def __len__(self) -> int:
        return len(self.samples)
