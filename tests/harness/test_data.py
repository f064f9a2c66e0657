"""Tests for tomato.harness.data: wnid order, folder scanning, bad images, transform, smoke set."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform
from torch.utils.data import DataLoader

from tomato.harness import data

REAL_VAL = Path(__file__).resolve().parents[3] / "shared" / "imagenet-sample" / "val"

# A few real wnids spread over the index range.
WNIDS = ["n01440764", "n02123045", "n07920052"]


def _write_jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 32)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """<tmp>/imagenet/val/<wnid>/*.JPEG with 2 images per class plus an empty class."""
    val = tmp_path / "imagenet" / "val"
    for k, w in enumerate(WNIDS):
        for j in range(2):
            _write_jpeg(val / w / f"{w}_{j}.JPEG", seed=10 * k + j)
    (val / "n01443537").mkdir()  # empty class folder: allowed
    (val / "n01440764" / "notes.txt").write_text("not an image")
    (val / "n01440764" / "._n01440764_0.JPEG").write_bytes(b"macOS resource fork")
    return tmp_path / "imagenet"


@pytest.fixture
def small_transform():
    return create_transform(input_size=(3, 32, 32), is_training=False)


# --------------------------------------------------------------------------- labels
def test_wnid_order():
    wnids = data.imagenet_wnids()
    assert len(wnids) == 1000
    assert wnids == sorted(wnids)
    assert len(set(wnids)) == 1000
    assert wnids.index("n01440764") == 0
    assert data.wnid_index("n01440764") == 0
    assert data.wnid_index("n15075141") == 999
    assert data.class_name(0).startswith("tench")
    assert data.class_name(data.wnid_index("n02123045")).startswith("tabby")
    with pytest.raises(IndexError):
        data.class_name(1000)


def test_wnids_returns_a_copy():
    data.imagenet_wnids().clear()
    assert len(data.imagenet_wnids()) == 1000


# --------------------------------------------------------------------------- scanning
@pytest.mark.parametrize("sub", ["", "val"])
def test_scan_layout(tree: Path, sub: str, caplog):
    with caplog.at_level(logging.WARNING, logger="tomato.harness.data"):
        samples = data.scan_imagenet_folder(tree / sub if sub else tree)
    assert [(s.wnid, s.path.name) for s in samples] == sorted((w, f"{w}_{j}.JPEG") for w in WNIDS for j in range(2))
    for s in samples:
        assert s.label == data.wnid_index(s.wnid)
        assert s.path.parent.name == s.wnid
    assert "1 of 4 class folders hold no photos: n01443537" in caplog.text


def test_scan_extensions_case_insensitive(tmp_path: Path):
    d = tmp_path / "val" / "n01440764"
    _write_jpeg(d / "a.jpg", 0)
    _write_jpeg(d / "b.JpEg", 1)
    Image.new("L", (8, 8)).save(d / "c.PNG")
    (d / "d.gif").write_bytes(b"GIF89a")  # listed (and named as corrupt when read)
    (d / "e.txt").write_bytes(b"notes")
    assert [s.path.name for s in data.scan_imagenet_folder(tmp_path)] == ["a.jpg", "b.JpEg", "c.PNG", "d.gif"]


def test_scan_missing_path(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="does not exist") as e:
        data.scan_imagenet_folder(missing)
    assert str(missing) in str(e.value)


def test_scan_not_a_directory(tmp_path: Path):
    f = tmp_path / "file.JPEG"
    _write_jpeg(f, 0)
    with pytest.raises(ValueError, match="not a directory"):
        data.scan_imagenet_folder(f)


def test_scan_wrong_layout_images_at_top(tmp_path: Path):
    for j in range(3):
        _write_jpeg(tmp_path / f"img{j}.JPEG", j)
    with pytest.raises(ValueError) as e:
        data.scan_imagenet_folder(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg
    assert "3 image file(s) directly" in msg
    assert "<wnid>" in msg  # says which layout is expected


def test_scan_unknown_wnid(tree: Path):
    (tree / "val" / "n99999999").mkdir()
    (tree / "val" / "misc").mkdir()
    with pytest.raises(ValueError) as e:
        data.scan_imagenet_folder(tree)
    assert "n99999999" in str(e.value) and "misc" in str(e.value)
    assert str(tree / "val") in str(e.value)


def test_scan_lists_at_most_five_unknown(tmp_path: Path):
    for k in range(7):
        (tmp_path / f"n9999999{k}").mkdir()
    with pytest.raises(ValueError, match=r"7 sub-folder.*and 2 more"):
        data.scan_imagenet_folder(tmp_path)


def test_scan_empty(tmp_path: Path):
    with pytest.raises(ValueError, match="empty"):
        data.scan_imagenet_folder(tmp_path)
    (tmp_path / "val" / "n01440764").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images") as e:
        data.scan_imagenet_folder(tmp_path)
    assert str(tmp_path / "val") in str(e.value)


# --------------------------------------------------------------------------- dataset
def test_corrupt_image_skipped_and_reported(tree: Path, small_transform, caplog):
    bad = tree / "val" / "n02123045" / "x.JPEG"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    truncated = tree / "val" / "n07920052" / "y.JPEG"
    truncated.write_bytes((tree / "val" / "n07920052" / "n07920052_0.JPEG").read_bytes()[:200])
    samples = data.scan_imagenet_folder(tree)
    ds = data.ImageNetFolder(samples, small_transform)
    bad_idx = {i for i, s in enumerate(samples) if s.path in (bad, truncated)}
    assert len(bad_idx) == 2

    with caplog.at_level(logging.WARNING, logger="tomato.harness.data"):
        assert not ds[min(bad_idx)]  # falsy marker, never raises
    assert "x.JPEG" in caplog.text

    seen_labels, seen_idx, seen_bad = [], [], []
    for images, labels, indices, bad_indices in DataLoader(ds, batch_size=3, collate_fn=data.collate_skip_bad):
        assert images.shape[1:] == (3, 32, 32) and images.shape[0] == len(labels) == len(indices)
        assert labels.dtype == indices.dtype == torch.long
        seen_labels += labels.tolist()
        seen_idx += indices.tolist()
        seen_bad += bad_indices
    assert {b.index for b in seen_bad} == bad_idx
    # Both are corrupt (final), each with the decoder's reason, not a generic label.
    assert {b.kind for b in seen_bad} == {"corrupt"}
    reasons = {b.path.name: b.error for b in seen_bad}
    assert reasons["x.JPEG"].startswith("UnidentifiedImageError: ")
    assert reasons["y.JPEG"].startswith("OSError: ") and "truncated" in reasons["y.JPEG"].lower()
    assert sorted(seen_idx) == sorted(set(range(len(samples))) - bad_idx)
    assert seen_labels == [samples[i].label for i in seen_idx]


def test_collate_all_bad():
    marker = data.BadSample(3, Path("a"), "e")
    images, labels, indices, bad = data.collate_skip_bad([marker, None])
    assert images.shape == (0, 3, 0, 0) and labels.numel() == 0 and indices.numel() == 0
    assert bad == [marker]


@pytest.mark.parametrize("error,kind", [
    (PermissionError(13, "Permission denied"), "transient"),
    (OSError(5, "Input/output error"), "transient"),
    (FileNotFoundError(2, "No such file or directory"), "transient"),
    (OSError("image file is truncated (3 bytes not processed)"), "corrupt"),
    (Image.UnidentifiedImageError("cannot identify image file"), "corrupt"),
    (SyntaxError("broken PNG file"), "corrupt"),
    (Image.DecompressionBombError("too big"), "corrupt"),
])
def test_classify_error_separates_corrupt_from_could_not_read_now(error, kind):
    assert data.classify_error(error) == kind


def test_a_file_that_cannot_be_read_now_is_transient_with_its_reason(tree: Path, small_transform, monkeypatch):
    samples = data.scan_imagenet_folder(tree)
    locked = samples[1].path
    real = data.load_image

    def load(path):
        # As root, chmod 000 does not stop a read: raise what the OS gives a normal user.
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(data, "load_image", load)
    item = data.ImageNetFolder(samples, small_transform)[1]
    assert not item and item.kind == "transient" and item.index == 1
    assert item.error == f"PermissionError: [Errno 13] Permission denied: '{locked}'"


def test_unreadable_root_or_class_folder_is_one_clear_error(tree: Path, monkeypatch):
    val = tree / "val"
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == blocked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    for blocked, what in [(val, "image folder"), (val / "n02123045", "class folder")]:
        with pytest.raises(ValueError) as exc:
            data.scan_imagenet_folder(tree)
        msg = str(exc.value)
        assert f"cannot read the {what} {blocked}" in msg and "PermissionError" in msg and "chmod" in msg


def test_non_utf8_file_name_is_named(tree: Path):
    folder = tree / "val" / "n02123045"
    raw = bytes(folder) + b"/caf\xe9.JPEG"  # Latin-1 e-acute: not valid UTF-8
    with open(raw, "wb") as fh:
        fh.write((folder / "n02123045_0.JPEG").read_bytes())
    with pytest.raises(ValueError) as exc:
        data.scan_imagenet_folder(tree)
    msg = str(exc.value)
    assert "caf\\udce9.JPEG" in msg and "not valid UTF-8" in msg and "rename" in msg
    msg.encode("utf-8")  # the message itself prints anywhere


def test_gray_and_rgba_become_rgb(tmp_path: Path):
    Image.new("L", (8, 6), 128).save(tmp_path / "g.png")
    Image.new("RGBA", (8, 6)).save(tmp_path / "a.png")
    for f in ("g.png", "a.png"):
        im = data.load_image(tmp_path / f)
        assert im.mode == "RGB" and im.size == (8, 6)


# --------------------------------------------------------------------------- transform
def _steps(transform) -> list:
    return list(transform.transforms)


def test_transform_paper_protocol_deit_base(vit):
    from torchvision import transforms as T

    model = vit("deit_base_patch16_224")
    steps = _steps(data.transform_for(model))
    resize = next(s for s in steps if isinstance(s, T.Resize))
    crop = next(s for s in steps if isinstance(s, T.CenterCrop))
    norm = next(s for s in steps if isinstance(s, T.Normalize))
    assert resize.size == 256
    assert resize.interpolation == T.InterpolationMode.BICUBIC
    assert tuple(crop.size) == (224, 224)
    assert torch.allclose(torch.as_tensor(norm.mean), torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(torch.as_tensor(norm.std), torch.tensor([0.229, 0.224, 0.225]))
    out = data.transform_for(model)(Image.new("RGB", (500, 375)))
    assert out.shape == (3, 224, 224)


def test_transform_timm_cfg_crop(vit):
    from torchvision import transforms as T

    model = vit("deit_tiny_patch16_224")
    resize = next(s for s in _steps(data.transform_for(model, crop_pct=None)) if isinstance(s, T.Resize))
    assert resize.size == int(224 / model.pretrained_cfg["crop_pct"])


# --------------------------------------------------------------------------- smoke set
def test_smoke_samples_loadable(small_transform):
    samples = data.smoke_samples()
    assert 6 <= len(samples) <= 8
    assert all(0 <= s.label < 1000 and data.imagenet_wnids()[s.label] == s.wnid for s in samples)
    assert len({s.path for s in samples}) == len(samples)
    # Read in place from the installed scikit-image, never from the repository.
    assert all("skimage" in s.path.parts for s in samples)
    ds = data.ImageNetFolder(samples, small_transform)
    for i in range(len(ds)):
        image, label, idx = ds[i]
        assert image.shape == (3, 32, 32) and label == samples[i].label and idx == i


def test_smoke_table_wnids_known():
    for item in data.SMOKE_TABLE:
        assert item.wnid in data.imagenet_wnids(), item
        assert item.why


def test_resolve_data(tree: Path):
    assert data.resolve_data(None) == data.smoke_samples() == data.resolve_data("smoke")
    assert data.resolve_data(str(tree)) == data.scan_imagenet_folder(tree / "val")
    with pytest.raises(ValueError):
        data.resolve_data(str(tree / "missing"))


# --------------------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.skipif(not REAL_VAL.is_dir(), reason=f"{REAL_VAL} absent")
def test_real_imagenet_sample(small_transform):
    wnids = data.imagenet_wnids()
    samples = data.scan_imagenet_folder(REAL_VAL)
    assert len(samples) == 1000
    assert {s.wnid for s in samples} == set(wnids)
    for s in samples:
        assert s.label == wnids.index(s.path.parent.name)
    # Decode a few (not all 1000: keep the suite fast).
    ds = data.ImageNetFolder(samples, small_transform)
    for i in (0, 281, 999):
        image, label, _ = ds[i]
        assert image.shape == (3, 32, 32) and label == i
    assert data.scan_imagenet_folder(REAL_VAL.parent) == samples
