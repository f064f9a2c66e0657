"""A labelled train/val pair of class folders, decoded once into memory, and its batches.

Layout: ``<root>/train/<class>/*.JPEG`` and ``<root>/val/<class>/*.JPEG`` with the same
class folders in both; class index = position of the folder name in the sorted list
(Imagenette: ``n01440764`` -> 0 ... ``n03888257`` -> 9).

On two CPU cores decoding a JPEG costs about as much as a tenth of a DeiT-Ti training
step per photo, every epoch: so each split is decoded once into one ``uint8`` tensor
(Imagenette: 9,469 x 3 x 224 x 224 = 1.4 GB), and each batch is cropped, flipped and
resized from memory with torchvision's functional ops.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import RandomResizedCrop

from .data import IMAGE_EXTENSIONS, check_name, classify_error, load_image

__all__ = ["Split", "check_splits", "class_folders", "decode_split", "file_list_sha256", "train_batch",
           "eval_batches"]

_log = logging.getLogger(__name__)


def class_folders(split: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image paths}`` of one split; ValueError for a bad layout."""
    if not split.is_dir():
        raise ValueError(f"{split} is not a folder (expected <root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG)")
    classes: dict[str, list[Path]] = {}
    for d in sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith(".")):
        check_name(d)
        for p in d.iterdir():
            check_name(p)  # one line naming the file, not a codec error later
        classes[d.name] = sorted(
            (p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: p.name)
    if not classes:
        raise ValueError(f"{split} holds no class folders (expected {split}/<class>/*.JPEG)")
    return classes


def check_splits(root: str | Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Both splits of ``root``, checked against each other before any compute.

    ValueError (one line) when a split is missing, a class folder is empty, or a class is
    in one split and not in the other.
    """
    root = Path(root).expanduser()
    train, val = class_folders(root / "train"), class_folders(root / "val")
    for name, split in (("train", train), ("val", val)):
        empty = [c for c, files in split.items() if not files]
        if empty:
            raise ValueError(f"{root / name}: class folder(s) {empty[:5]} hold no images "
                             f"({', '.join(sorted(IMAGE_EXTENSIONS))}); remove them or add photos")
    only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
    if only_train or only_val:
        raise ValueError(f"train and val of {root} have different classes: only in train {only_train[:5]}, "
                         f"only in val {only_val[:5]}; both splits need the same class folders")
    if len(train) < 2:
        raise ValueError(f"{root / 'train'} has one class; a classifier needs at least two")
    return train, val


def file_list_sha256(split: dict[str, list[Path]]) -> str:
    """Hash of the ``class/file`` names of a split: the same photos -> the same hash."""
    h = hashlib.sha256()
    for cls in sorted(split):
        for p in split[cls]:
            h.update(f"{cls}/{p.name}\n".encode())
    return h.hexdigest()


@dataclass
class Split:
    """A decoded split: ``images (N, 3, S, S) uint8``, ``labels (N,) int64``, the paths
    kept, and the files skipped as ``(path, reason)``."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[Path]
    skipped: list[tuple[Path, str]]


def _decode(path: Path, size: int) -> np.ndarray:
    img = load_image(path)
    if img.size != (size, size):
        # Imagenette here is already 224 x 224; other folders are squashed to it, as the
        # evaluation transform of the model card does (resize, no crop).
        img = img.resize((size, size), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def decode_split(split: dict[str, list[Path]], size: int = 224, threads: int = 2, progress: bool = True) -> Split:
    """Decode every photo of ``split`` into memory at ``size`` x ``size``.

    Unreadable or corrupt photos are skipped, logged and returned in ``skipped``, as
    evaluation does.
    """
    from tqdm.auto import tqdm

    items = [(p, i) for i, cls in enumerate(sorted(split)) for p in split[cls]]
    images = torch.empty((len(items), 3, size, size), dtype=torch.uint8)
    keep: list[int] = []
    skipped: list[tuple[Path, str]] = []

    def work(k: int) -> tuple[int, np.ndarray | None, str]:
        try:
            return k, _decode(items[k][0], size), ""
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError ...
            return k, None, f"{classify_error(e)}: {type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=threads) as pool:  # PIL releases the GIL while decoding
        bar = tqdm(pool.map(work, range(len(items))), total=len(items), desc="decoding", unit="img",
                   disable=not progress, leave=False)
        for k, array, reason in bar:
            if array is None:
                _log.warning("skipping %s (%s)", items[k][0], reason)
                skipped.append((items[k][0], reason))
                continue
            images[k] = torch.from_numpy(array)
            keep.append(k)
    index = torch.tensor(keep, dtype=torch.long)
    labels = torch.tensor([items[k][1] for k in keep], dtype=torch.long)
    return Split(images[index] if skipped else images, labels, [items[k][0] for k in keep], skipped)


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, H, W), as ToTensor + Normalize compute it."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x.float() / 255 - m) / s


def train_batch(images: torch.Tensor, resolution: int, scale: tuple[float, float],
                mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Random-resized crop (torchvision's box sampling), horizontal flip, bicubic resize.

    images: (B, 3, S, S) uint8 -> (B, 3, resolution, resolution) float, normalised.
    Every draw comes from torch's global generator, which the trainer seeds per epoch.
    """
    out = torch.empty((images.shape[0], 3, resolution, resolution))
    floats = images.float()
    for b in range(images.shape[0]):
        top, left, h, w = RandomResizedCrop.get_params(images[b], scale=list(scale), ratio=[3 / 4, 4 / 3])
        crop = floats[b:b + 1, :, top:top + h, left:left + w]
        crop = F.interpolate(crop, size=(resolution, resolution), mode="bicubic", align_corners=False,
                             antialias=True)
        if torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        out[b] = crop[0]
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255
    s = torch.tensor(std).view(1, 3, 1, 1) * 255
    return (out.clamp_(0, 255) - m) / s


def eval_batches(split: Split, resolution: int, batch_size: int, mean: Sequence[float], std: Sequence[float]):
    """Yield ``(images (B, 3, r, r) float, labels (B,))`` over the whole split, in order:
    the evaluation transform (resize, no crop)."""
    for start in range(0, len(split.labels), batch_size):
        x = split.images[start:start + batch_size]
        if x.shape[-1] != resolution:
            x = F.interpolate(x.float(), size=(resolution, resolution), mode="bicubic", align_corners=False,
                              antialias=True).clamp_(0, 255).round_().to(torch.uint8)
        yield _normalise(x, mean, std), split.labels[start:start + batch_size]
