"""ImageNet-style image folders, the evaluation transform, and the embedded smoke set.

Layout understood by :func:`scan_imagenet_folder` (ImageNet / ImageNet-Mini ``val``)::

    <root>/val/<wnid>/<file>.JPEG      (pass <root> or <root>/val)

The class index of a wnid is its position in the sorted list of the 1,000 ImageNet-1k
wnids (``n01440764`` -> 0), the order every ImageNet-1k classifier head uses.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
import importlib.util
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import nn

from .results import CORRUPT, TRANSIENT

__all__ = [
    "BadSample",
    "ImageNetFolder",
    "PAPER_CROP_PCT",
    "SMOKE_TABLE",
    "Sample",
    "SmokeImage",
    "class_name",
    "classify_error",
    "collate_skip_bad",
    "imagenet_wnids",
    "label_samples",
    "load_image",
    "resolve_data",
    "scan_imagenet_folder",
    "smoke_images",
    "smoke_samples",
    "transform_for",
    "wnid_index",
    "wnid_name",
]

_log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
#: Photos PIL decodes without its decompression-bomb guard; larger ones are refused as
#: corrupt. PIL's own limit (~179 MP) refuses real 400-megapixel panoramas.
MAX_PIXELS: int = 1_000_000_000
#: Photos above this size (PIL's own warning threshold) are named in a warning.
WARN_PIXELS: int = 89_478_485
# Errors with an errno that no retry can mend: the entry is not a readable file at all.
_FINAL_ERRNOS = frozenset({errno.ELOOP, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG})
_WNID_RE = re.compile(r"^n\d{8}$")
_EXPECTED_LAYOUT = "<root>/val/<wnid>/<image>.JPEG or <root>/<wnid>/<image>.JPEG (wnid like n01440764)"

# DeiT's own evaluation (and the paper) resizes the short side to 256 and centre-crops
# 224, i.e. crop_pct = 224/256. timm's pretrained cfg for DeiT says 0.9 (resize 248),
# so the paper's protocol has to be asked for explicitly.
PAPER_CROP_PCT: float = 224 / 256


# --------------------------------------------------------------------------- labels
@functools.lru_cache(maxsize=1)
def _wnid_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sorted wnids, descriptions), read once from timm's bundled ImageNet-1k info."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    wnids = tuple(info.label_names())
    # timm already stores them sorted; sort anyway so the index contract never depends
    # on a file's order.
    order = sorted(range(len(wnids)), key=lambda i: wnids[i])
    return tuple(wnids[i] for i in order), tuple(info.index_to_description(i) for i in order)


@functools.lru_cache(maxsize=1)
def _wnid_to_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(_wnid_table()[0])}


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k wnids, sorted; list position = class index."""
    return list(_wnid_table()[0])


def wnid_index(wnid: str) -> int:
    """Class index of ``wnid``; ``KeyError`` if it is not an ImageNet-1k wnid."""
    return _wnid_to_index()[wnid]


def class_name(index: int) -> str:
    """Human-readable name of class ``index`` (0..999), e.g. ``'tench, Tinca tinca'``."""
    names = _wnid_table()[1]
    if not 0 <= index < len(names):
        raise IndexError(f"class index {index} out of range 0..{len(names) - 1}")
    return names[index]


def wnid_name(wnid: str) -> str:
    """ImageNet's short name for a wnid folder (``'tench'``), or the folder name for other data."""
    try:
        return class_name(wnid_index(wnid)).split(",")[0]
    except KeyError:
        return wnid


# --------------------------------------------------------------------------- scanning
@dataclass(frozen=True)
class Sample:
    """One labelled image file."""

    path: Path
    label: int
    wnid: str


def _listdir(folder: Path, what: str) -> list[Path]:
    """Entries of ``folder``; ValueError naming it when the OS refuses (permissions, I/O)."""
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise ValueError(
            f"cannot read the {what} {folder} ({type(e).__name__}: {e.strerror or e}); "
            f"check that it exists and that this user may list it (e.g. chmod a+rx {folder})"
        ) from None


def check_name(p: Path) -> None:
    # A name that is not valid UTF-8 (decoded with surrogate escapes) cannot be written
    # to the UTF-8 results files; say which file rather than fail later with a codec error.
    try:
        p.name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"file name {ascii(str(p))} is not valid UTF-8; rename it (e.g. with convmv) "
            f"or move it out of the image folder"
        ) from None


def _split_folder(root: Path) -> Path:
    """``root`` itself, or ``root/val`` when ``root`` is the parent of a ``val`` split."""
    if not root.exists():
        raise ValueError(f"ImageNet folder {root} does not exist (expected {_EXPECTED_LAYOUT})")
    if not root.is_dir():
        raise ValueError(f"ImageNet folder {root} is not a directory (expected {_EXPECTED_LAYOUT})")
    val = root / "val"
    try:
        return val if val.is_dir() else root
    except OSError as e:  # is_dir() raises only for errors other than "not found"
        raise ValueError(f"cannot read the image folder {root} ({type(e).__name__}: {e})") from None


def _is_image(p: Path) -> bool:
    """Whether ``p`` is listed as a photo. Hidden files are skipped (macOS '._x.JPEG'
    resource forks look like images but are not). An entry with an image suffix that is not
    a regular file (a symlink loop, a folder named x.JPEG) is listed too: reading it fails
    and the run names it in its bad-images list instead of dropping it without a word."""
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def scan_imagenet_folder(root: str | Path) -> list[Sample]:
    """List the labelled images under an ImageNet-style split folder.

    ``root`` is the split folder (``val/<wnid>/*.JPEG``) or its parent holding ``val/``.
    Order is deterministic: by wnid, then file name. Raises ``ValueError`` naming the
    path when the folder is missing, unreadable (permissions), has the wrong layout, has
    a sub-folder that is not an ImageNet-1k wnid, holds a file name that is not valid
    UTF-8, or holds no images. Empty class folders are allowed.
    """
    root = Path(root).expanduser()
    split = _split_folder(root)
    entries = _listdir(split, "image folder")
    subdirs = sorted(d for d in entries if d.is_dir() and not d.name.startswith(".")
                     and d.suffix.lower() not in IMAGE_EXTENSIONS)
    known = _wnid_to_index()
    broken = sorted(d.name for d in entries if not d.exists() and _WNID_RE.match(d.name))
    if broken:
        # A class folder that is a dangling link or a link loop: say so, do not drop it silently.
        _log.warning("%s: %d class folder(s) cannot be opened (broken or looping links), skipped: %s",
                     split, len(broken), ", ".join(broken[:5]))

    if not any(_WNID_RE.match(d.name) for d in subdirs):
        loose = [p for p in entries if _is_image(p)]
        if loose:
            found = f"found {len(loose)} image file(s) directly in it"
        elif subdirs:
            found = f"found only sub-folders {[d.name for d in subdirs[:5]]}"
        else:
            found = "it is empty"
        raise ValueError(
            f"No ImageNet class folders in {split}: {found}. Expected layout {_EXPECTED_LAYOUT}."
        )

    unknown = [d.name for d in subdirs if d.name not in known]
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise ValueError(
            f"{split} has {len(unknown)} sub-folder(s) that are not ImageNet-1k wnids: "
            f"{unknown[:5]}{more}. Expected layout {_EXPECTED_LAYOUT}."
        )

    samples: list[Sample] = []
    empty: list[str] = []
    other: list[str] = []
    for d in subdirs:
        listed = _listdir(d, "class folder")
        files = sorted((p for p in listed if _is_image(p)), key=lambda p: p.name)
        other += [f"{d.name}/{p.name}" for p in listed if not p.name.startswith(".") and not _is_image(p)]
        for p in files:
            check_name(p)
        if not files:
            empty.append(d.name)
        samples.extend(Sample(path=p, label=known[d.name], wnid=d.name) for p in files)
    if other:
        _log.warning("%s: %d file(s) are not photos (%s) and are not used: %s", split, len(other),
                     ", ".join(sorted(IMAGE_EXTENSIONS)), ", ".join(other[:5]) + (" ..." if len(other) > 5 else ""))

    if not samples:
        raise ValueError(
            f"No images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the {len(subdirs)} class "
            f"folder(s) of {split}."
        )
    if empty:
        # ImageNet-Mini has classes with very few images; an empty one is legal but worth
        # knowing about when comparing accuracies.
        _log.warning("%s: %d of %d class folders hold no photos: %s", split, len(empty), len(subdirs),
                     ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else ""))
    _log.info("%s: %d images in %d classes", split, len(samples), len(subdirs) - len(empty))
    return samples


# --------------------------------------------------------------------------- images
# PIL's size guard is one module-wide number: raise it only while our own open runs.
_PIL_LIMIT = threading.Lock()


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale as 8-bit 'L': ``convert('RGB')`` would clip every value
    above 255 to white."""
    import numpy as np

    a = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a.astype(np.float64) / 257.0  # 0..65535 -> 0..255
    elif im.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as an RGB PIL image: grey (8 and 16 bit), palette and RGBA are
    converted; an animated GIF gives its first frame. Photos up to :data:`MAX_PIXELS`
    load; a larger one raises ``Image.DecompressionBombError`` naming the file."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        # Final, not "could not be read now": rerunning cannot make the link point somewhere.
        raise ValueError(f"{p} is a symbolic link to nothing ({os.readlink(p)})")
    if p.exists() and not p.is_file() and not p.is_dir():
        # A FIFO or a device would block the read forever (or stream without end).
        raise ValueError(f"{p} is not a regular file (a FIFO, socket or device)")
    with _PIL_LIMIT, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = before
    # convert() returns a fully loaded copy, so the file handle can be closed at once.
    with im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise Image.DecompressionBombError(
                f"{path}: {w} x {h} = {w * h / 1e6:.0f} megapixels, more than the {MAX_PIXELS / 1e6:.0f} "
                f"that are read (a decompression bomb, or a photo to shrink first)")
        if w * h > WARN_PIXELS:
            _log.warning("%s is a %.0f-megapixel photo: decoding it takes time and memory", path, w * h / 1e6)
        if im.mode.startswith("I") or im.mode == "F":
            return _to_8bit(im).convert("RGB")
        return im.convert("RGB")


def classify_error(e: BaseException) -> str:
    """``"transient"`` when the file could not be read *now*, ``"corrupt"`` when it was
    read but does not decode.

    The OS reports a failed read with an errno (EACCES, EIO, ENOENT, EMFILE...): that
    may succeed later, so a resumed run retries it. PIL's decoding failures
    (UnidentifiedImageError, "image file is truncated", SyntaxError, ValueError,
    DecompressionBombError) carry no errno: the bytes themselves are bad, which is final.
    """
    if isinstance(e, OSError) and e.errno is not None and e.errno not in _FINAL_ERRNOS:
        return TRANSIENT
    return CORRUPT


@dataclass(frozen=True)
class BadSample:
    """Returned by :class:`ImageNetFolder` in place of an item whose file cannot be used.

    Falsy, so ``if item:`` treats it like ``None``; it keeps the dataset index, the
    reason (``"ExceptionType: message"``) and its kind (:func:`classify_error`) so that
    :func:`collate_skip_bad` can report it.
    """

    index: int
    path: Path
    error: str
    kind: str = CORRUPT

    def __bool__(self) -> bool:
        return False


class ImageNetFolder(torch.utils.data.Dataset):
    """Dataset over a list of :class:`Sample`.

    ``dataset[i]`` is ``(image (3,H,W) float tensor, label int, i)``, or a
    :class:`BadSample` (and a logged warning) when the file cannot be read or decoded;
    it never raises for a bad image. Use with ``DataLoader(..., collate_fn=collate_skip_bad)``.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable[[Image.Image], torch.Tensor]):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int] | BadSample:
        s = self.samples[i]
        try:
            img = load_image(s.path)
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
            # Only reading/decoding is guarded: a failing transform is a bug and must surface.
            kind = classify_error(e)
            _log.warning("skipping %s image %s: %s: %s", kind, s.path, type(e).__name__, e)
            return BadSample(index=i, path=s.path, error=f"{type(e).__name__}: {e}", kind=kind)
        return self.transform(img), s.label, i


def collate_skip_bad(
    batch: Sequence[tuple[torch.Tensor, int, int] | BadSample | None],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[BadSample]]:
    """Collate good items, drop bad ones.

    Returns ``(images (B,3,H,W), labels (B,) int64, indices (B,) int64, bad)`` where
    ``bad`` lists the :class:`BadSample` of the items that could not be read or decoded
    (index, path, reason, kind). When every item of the batch is bad, ``images`` has
    shape ``(0,3,0,0)`` and B = 0.
    """
    good = [b for b in batch if b]
    bad = [b for b in batch if isinstance(b, BadSample)]
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return torch.empty(0, 3, 0, 0), empty, empty.clone(), bad
    images = torch.stack([g[0] for g in good])
    labels = torch.tensor([g[1] for g in good], dtype=torch.long)
    indices = torch.tensor([g[2] for g in good], dtype=torch.long)
    return images, labels, indices, bad


def transform_for(model: nn.Module, crop_pct: float | None = PAPER_CROP_PCT) -> Callable[[Any], torch.Tensor]:
    """Evaluation transform for ``model`` (PIL image -> (3,H,W) normalised tensor).

    Input size, interpolation, mean and std come from the model's timm pretrained cfg.
    ``crop_pct`` defaults to the paper's protocol (resize 256, centre crop 224 for a
    224 model: DeiT's own evaluation); pass ``None`` to keep timm's cfg value (0.9 for
    DeiT, i.e. resize 248).
    """
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    if cfg.get("crop_mode") == "squash":
        # A model trained here: its card's transform (resize, no crop) is the only right one.
        crop_pct = None
    if crop_pct is not None:
        cfg["crop_pct"] = crop_pct
    return timm.data.create_transform(**cfg, is_training=False)


# --------------------------------------------------------------------------- smoke set
class SmokeImage(NamedTuple):
    """One photograph shipped inside scikit-image, with its nearest ImageNet-1k class."""

    file: str
    wnid: str
    why: str


# Photographs bundled in the installed scikit-image package (skimage/data), so the smoke
# set needs no download. Labels are our best single ImageNet-1k class for each; several
# photos have no exact class (ImageNet has no "person" or "motorcycle" class).
SMOKE_TABLE: tuple[SmokeImage, ...] = (
    SmokeImage("chelsea.png", "n02123045", "close-up of a striped brown house cat -> 'tabby, tabby cat'"),
    SmokeImage("coffee.png", "n07920052", "a cup of espresso with crema on a saucer -> 'espresso'"),
    SmokeImage("rocket.jpg", "n03773504", "a rocket on its launch pad -> 'missile' (no 'rocket' class)"),
    SmokeImage("motorcycle_left.png", "n03785016", "a motorcycle in a garage -> 'moped' (no 'motorcycle' class)"),
    SmokeImage("camera.png", "n04485082", "the cameraman: camera on a tripod -> 'tripod' (gray image)"),
    SmokeImage("astronaut.png", "n04266014", "astronaut portrait with a shuttle model -> 'space shuttle' (no 'person' class)"),
    SmokeImage("clock_motion.png", "n02708093", "motion-blurred analog clock face -> 'analog clock' (gray image)"),
)


def _skimage_data_dir() -> Path:
    # The package directory itself, located without importing skimage.data's loaders
    # (find_spec imports the parent package only; importlib.resources.files needs 3.9);
    # the files are read in place and never copied into this repository.
    spec = importlib.util.find_spec("skimage.data")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-image's data folder (skimage.data) was not found; pip install scikit-image")
    return Path(next(iter(spec.submodule_search_locations)))


def smoke_samples() -> list[Sample]:
    """The embedded SMOKE set: a few photographs bundled with scikit-image.

    It exists so that every command runs end to end with no download. It is NOT a
    benchmark: seven images, hand-assigned nearest classes (see ``SMOKE_TABLE``), so any
    accuracy measured on it says nothing about a model. Gray images are returned as is;
    :func:`load_image` / :class:`ImageNetFolder` convert them to RGB.
    """
    data_dir = _skimage_data_dir()
    samples = []
    for item in SMOKE_TABLE:
        path = data_dir / item.file
        if not path.is_file():
            # Some scikit-image builds ship only part of the gallery.
            _log.warning("smoke image %s is missing from scikit-image; skipped", path)
            continue
        samples.append(Sample(path=path, label=wnid_index(item.wnid), wnid=item.wnid))
    if not samples:
        raise FileNotFoundError(f"none of the smoke images {[t.file for t in SMOKE_TABLE]} found in {data_dir}")
    return samples


def smoke_images(model: nn.Module, device: Any = "cpu") -> torch.Tensor:
    """The SMOKE photos as ``model`` reads them (:func:`transform_for`): (P, 3, H, W) on
    ``device``, for benchmarks that need real photos and no download; a batch of ``b``
    repeats them: ``images[torch.arange(b) % len(images)]``."""
    tf = transform_for(model)
    return torch.stack([tf(load_image(s.path)) for s in smoke_samples()]).to(device)


def label_samples(samples: Sequence[Sample], classes: Sequence[str] | None, num_classes: int,
                  model: str = "the model") -> list[Sample]:
    """``samples`` labelled for a head of ``num_classes`` outputs, checked before any compute.

    ``classes``: the head's wnids in order (a model card's); each sample's label becomes
    its wnid's position there, and a class folder the head does not know is refused. Without
    ``classes`` the head must be ImageNet-1k's (1,000 outputs; labels stay ImageNet
    indices). The embedded smoke photos are no class of a 10-class head: they get label
    -1 (never counted as correct) with a warning. ValueError names what does not match.
    """
    if classes is None:
        if num_classes != 1000:
            raise ValueError(f"{model} has {num_classes} outputs but the labels are ImageNet-1k's 1,000 classes: "
                             f"its scores would be meaningless. Pass a checkpoint with its model card "
                             f"(which names the classes), or a model with an ImageNet-1k head")
        return list(samples)
    if len(classes) != num_classes:
        raise ValueError(f"{model}'s model card names {len(classes)} classes but its head has {num_classes} outputs")
    index = {w: i for i, w in enumerate(classes)}
    # Only the embedded photos themselves are excused, not a folder that shares their wnid.
    smoke_dir = _skimage_data_dir() if any(s.wnid not in index for s in samples) else None
    unknown = sorted({s.wnid for s in samples if s.wnid not in index and s.path.parent != smoke_dir})
    if unknown:
        raise ValueError(f"{model} knows {len(classes)} classes ({', '.join(classes[:3])}, ...) from its model card; "
                         f"the data has class folder(s) it does not know: {unknown[:5]}. Point --data at a folder "
                         f"of its classes (e.g. the val split it was trained with)")
    if any(s.wnid not in index for s in samples):
        _log.warning("%s knows none of the smoke photos' classes: they are scored as wrong (label -1)", model)
    return [Sample(path=s.path, label=index.get(s.wnid, -1), wnid=s.wnid) for s in samples]


def resolve_data(spec: str | Path | None) -> list[Sample]:
    """``None`` or ``"smoke"`` -> :func:`smoke_samples`; anything else is a folder path
    given to :func:`scan_imagenet_folder`."""
    if spec is None or str(spec) == "smoke":
        return smoke_samples()
    return scan_imagenet_folder(spec)
