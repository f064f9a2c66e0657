"""Tests for tomato.harness.models: checkpoint loading, offline behaviour, random fallback, hashing.

No test touches the network: the hub is put in offline mode (or its probe is stubbed) and
its cache is pointed at an empty temporary folder, so warm caches cannot change results.
"""
from __future__ import annotations

import logging
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import torch
from safetensors.torch import save_file

from tomato.harness import models, provenance

NAME = "deit_tiny_patch16_224"
HUB_ID = "timm/deit_tiny_patch16_224.fb_in1k"


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch, tmp_path: Path) -> Path:
    """Hub offline and an empty private hub cache; returns the cache folder."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads both at import time, so patch its constants as well.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def source_model(vit) -> torch.nn.Module:
    torch.manual_seed(123)
    return vit(NAME)


def _same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["pth", "wrapped_pth", "module_prefix_pt", "safetensors"])
def test_checkpoint_round_trip(tmp_path: Path, source_model, kind: str):
    sd = source_model.state_dict()
    if kind == "pth":
        path = tmp_path / "w.pth"
        torch.save(sd, path)
    elif kind == "wrapped_pth":
        path = tmp_path / "w.pth"
        torch.save({"model": sd}, path)
    elif kind == "module_prefix_pt":
        path = tmp_path / "w.pt"
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    else:
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))

    model, info = models.load(NAME, checkpoint=path)
    assert _same_params(model, source_model)
    assert not model.training
    assert info.sha256 == provenance.state_dict_sha256(source_model)
    assert info.source == f"checkpoint:{path.resolve()}"
    assert info.source.startswith("checkpoint:")
    assert info.pretrained and info.model == NAME


def test_checkpoint_original_deit_layout(tmp_path: Path, source_model):
    """facebookresearch/deit stores a flattened patch-embedding weight; timm's filter converts it."""
    sd = dict(source_model.state_dict())
    w = sd["patch_embed.proj.weight"]
    sd["patch_embed.proj.weight"] = w.reshape(w.shape[0], -1)
    torch.save({"model": sd}, tmp_path / "deit.pth")
    model, info = models.load(NAME, checkpoint=tmp_path / "deit.pth")
    assert _same_params(model, source_model)
    assert info.sha256 == provenance.state_dict_sha256(source_model)


def test_checkpoint_wrong_key(tmp_path: Path, source_model):
    sd = dict(source_model.state_dict())
    sd["not_a_key.weight"] = sd.pop("head.weight")
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        models.load(NAME, checkpoint=tmp_path / "bad.pth")
    assert "head.weight" in str(e.value) and "not_a_key.weight" in str(e.value)


def test_checkpoint_wrong_shape(tmp_path: Path, source_model):
    sd = dict(source_model.state_dict())
    sd["head.weight"] = sd["head.weight"][:10]
    sd["head.bias"] = sd["head.bias"][:10]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="head.weight"):
        models.load(NAME, checkpoint=tmp_path / "bad.pth")


def test_checkpoint_not_a_state_dict(tmp_path: Path):
    # ints and strings only: torch 1.13's weights_only reader refuses floats outright.
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        models.load(NAME, checkpoint=tmp_path / "x.pth")
    (tmp_path / "x.ckpt.txt").write_text("hello")
    with pytest.raises(ValueError, match="Unsupported checkpoint type"):
        models.load(NAME, checkpoint=tmp_path / "x.ckpt.txt")


def test_checkpoint_missing_file(tmp_path: Path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError) as e:
        models.load(NAME, checkpoint=missing)
    assert str(missing) in str(e.value)


# --------------------------------------------------------------------------- pretrained / offline
def test_pretrained_offline_without_fallback():
    with pytest.raises(RuntimeError) as e:
        models.load(NAME, pretrained=True)
    msg = str(e.value)
    assert "--checkpoint" in msg and "--random-weights" in msg and HUB_ID in msg


def test_pretrained_unreachable_hub_fails_fast(monkeypatch):
    """Not in HF offline mode but no network: the probe short-cuts the hub's ~50 s of retries."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(models, "_hub_reachable", lambda endpoint, timeout=3.0: False)
    with pytest.raises(RuntimeError, match="unreachable and nothing is cached") as e:
        models.load(NAME)
    assert "--random-weights" in str(e.value)


def test_pretrained_from_local_hub_cache(monkeypatch, offline_hub: Path, source_model):
    """Offline with the weights in the hub cache: timm's pretrained path still works."""
    snap = offline_hub / "models--timm--deit_tiny_patch16_224.fb_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source_model.state_dict().items()}, str(snap / "model.safetensors"))
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(models, "_hub_reachable", lambda endpoint, timeout=3.0: False)

    model, info = models.load(NAME)
    assert info.source == f"timm-pretrained:{HUB_ID}" and info.pretrained
    assert info.sha256 == provenance.state_dict_sha256(source_model)
    assert _same_params(model, source_model)


def test_random_fallback(caplog):
    with caplog.at_level(logging.WARNING, logger="tomato.harness.models"):
        model, info = models.load(NAME, pretrained=True, random_fallback=True)
    assert info.source == "random-init:seed=0"
    assert info.pretrained is False
    assert "NOT accuracy" in caplog.text
    assert not model.training
    _, again = models.load(NAME, pretrained=False, seed=0)
    _, other = models.load(NAME, pretrained=False, seed=1)
    assert again.sha256 == info.sha256
    assert other.sha256 != info.sha256
    assert other.source == "random-init:seed=1"


def test_random_init_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    models.load(NAME, pretrained=False, seed=5)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- names, hashing
def test_unknown_name():
    with pytest.raises(ValueError) as e:
        models.load("deit_tiny_patch16_2244")
    assert "deit_tiny_patch16_224" in str(e.value)
    with pytest.raises(ValueError, match="Unknown"):
        models.load("totally_not_a_model", pretrained=False)
    with pytest.raises(ValueError, match="pretrained tag"):
        models.load("deit_tiny_patch16_224.no_such_tag", pretrained=False)


def test_sha256_depends_on_values_and_keys(source_model):
    sd = source_model.state_dict()
    base = provenance.state_dict_sha256(sd)
    assert provenance.state_dict_sha256(source_model) == base
    assert provenance.state_dict_sha256({k: v.clone() for k, v in reversed(list(sd.items()))}) == base
    changed = dict(sd)
    changed["head.bias"] = sd["head.bias"] + 1
    assert provenance.state_dict_sha256(changed) != base
    renamed = {("x." + k if k == "head.bias" else k): v for k, v in sd.items()}
    assert provenance.state_dict_sha256(renamed) != base
    assert provenance.state_dict_sha256({"a": torch.ones(2, dtype=torch.bfloat16)})  # any dtype


def test_checkpoint_with_more_than_weights_says_how_to_save_the_weights_alone(tmp_path: Path):
    import argparse

    # What training scripts save next to the weights: their argparse Namespace.
    torch.save({"model": {}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "full.pth")
    with pytest.raises(ValueError) as exc:
        models.load(NAME, checkpoint=tmp_path / "full.pth")
    msg = str(exc.value)
    assert f"checkpoint {tmp_path / 'full.pth'} is not a readable torch" in msg
    assert "torch.save(ckpt['model'], 'weights.pth')" in msg
