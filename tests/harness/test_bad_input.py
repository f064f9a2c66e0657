"""Inputs that used to give silently wrong results or lose files: each case starts from the input."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tomato
from tomato.core import budget
from tomato.harness import cli, data, results, sweep

ROOT = Path(__file__).resolve().parents[2]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


# 1 ------------------------------------------------------------------ heads vs labels
def test_a_head_without_1000_classes_is_refused_before_scoring(tmp_path, capsys):
    folder = tmp_path / "val" / "n01440764"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(folder / "a.JPEG")
    out = tmp_path / "run"
    rc = cli.main(["eval", "--model", "vit_tiny_patch16_224.augreg_in21k", "--random-weights", "--data",
                   str(tmp_path), "--out", str(out), "--quiet"])
    lines = _errors(capsys)
    assert rc == 2 and len(lines) == 1 and "21843 outputs but the labels are ImageNet-1k" in lines[0]
    assert not (out / "predictions.csv").exists()


# 2 ------------------------------------------------------------------ 16-bit greyscale
def test_16_bit_greyscale_png_is_not_white(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(tmp_path / "g8.png")
    a = np.asarray(data.load_image(tmp_path / "g16.png")).astype(int)
    b = np.asarray(data.load_image(tmp_path / "g8.png")).astype(int)
    assert a.shape == (64, 64, 3) and np.abs(a - b).max() <= 1 and a.mean() < 200


# 3 ------------------------------------------------------------------ budget per image
def test_the_faithful_budget_search_reads_each_image_alone(vit):
    model = vit("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.keep_ratio = 0.5
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        model(x)
    clean = tomato.patch.state(model).tokens.tolist()
    x[0, 0, 0, 0] = float("nan")  # image 0's activations are all NaN after attention
    for method in ("faithful", "parallel"):
        model.method = method
        with torch.no_grad():
            model(x)
        tokens = tomato.patch.state(model).tokens.tolist()
        assert tokens[1:] == clean[1:] and all(t <= 98 for t in clean), (method, tokens, clean)
    # The search itself: a NaN score in image 0 changes no other image's threshold.
    scores = torch.rand(3, 16, 4)
    sims = budget.search_sim(scores, (4, 4), budget=8)
    scores[0, 3, 1] = float("nan")
    assert torch.equal(budget.search_sim(scores, (4, 4), budget=8)[1:], sims[1:])


# 4 ------------------------------------------------------------------ foreign files
def test_an_out_folder_of_foreign_files_is_refused_and_left_alone(tmp_path):
    for name in ("summary.json", "provenance.json", "notes.txt"):
        out = tmp_path / name.split(".")[0]
        out.mkdir()
        (out / name).write_text("mine")
        with pytest.raises(ValueError, match="not a run folder of ours"):
            results.RunStore.open(out, {"variant": "deit"})
        assert (out / name).read_text() == "mine" and sorted(p.name for p in out.iterdir()) == [name]
    busy = tmp_path / "sweep"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="not a sweep's"):
        sweep._check_sweep_folder(busy)


# 5 ------------------------------------------------------------------ photos dropped silently
def test_every_photo_is_used_or_named(tmp_path, caplog):
    val = tmp_path / "val"
    cls, empty = val / "n01440764", val / "n02102040"
    cls.mkdir(parents=True)
    empty.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(cls / "a.webp")
    Image.new("RGB", (32, 32), (10, 200, 10)).save(cls / "b.gif")
    (cls / "c.JPEG").mkdir()  # a folder with a photo's name
    os.symlink("d.JPEG", cls / "d.JPEG")  # a link to itself
    os.symlink("n03888257", val / "n03888257")  # a class folder that loops
    (cls / "notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="tomato.harness.data"):
        samples = data.scan_imagenet_folder(val)
    assert [s.path.name for s in samples] == ["a.webp", "b.gif", "c.JPEG", "d.JPEG"]
    text = caplog.text
    assert "n02102040" in text and "n03888257" in text and "notes.txt" in text
    ds = data.ImageNetFolder(samples, lambda im: im)
    kinds = [getattr(ds[i], "kind", "ok") for i in range(len(samples))]
    assert kinds == ["ok", "ok", "corrupt", "corrupt"]  # final: never retried as 'transient'


def test_large_photos_load_and_are_named(tmp_path, monkeypatch, caplog):
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's guard far below the photo
    monkeypatch.setattr(data, "WARN_PIXELS", 1000)
    with caplog.at_level(logging.WARNING, logger="tomato.harness.data"):
        assert data.load_image(tmp_path / "big.png").size == (40, 40)
    assert "big.png is a 0-megapixel photo" in caplog.text
    assert Image.MAX_IMAGE_PIXELS == 100  # PIL's setting is left as it was
    monkeypatch.setattr(data, "MAX_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError, match="big.png"):
        data.load_image(tmp_path / "big.png")


# 6 ------------------------------------------------------------------ messages
def test_refusals_name_the_flag_or_the_model(capsys):
    cases = {
        ("--model", "vit_base_patch16_reg4_gap_256"): "has no class token",
        ("--model", "vit_tiny_r_s16_p8_224"): "vision_transformer_hybrid",
    }
    if not torch.cuda.is_available():
        cases[("--device", "cuda")] = "--device cuda: this machine has no usable CUDA device"
    for (flag, value), expected in cases.items():
        assert cli.main(["time", flag, value, "--random-weights", "--quiet"]) == 2
        lines = _errors(capsys)
        assert len(lines) == 1 and expected in lines[0] and (value in lines[0]), lines


def _run_eval(out: Path) -> list[str]:
    return [sys.executable, "-m", "tomato", "eval", "--model", "deit_tiny_patch16_224", "--random-weights",
            "--data", "smoke", "--batch-size", "1", "--workers", "0", "--quiet", "--out", str(out)]


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_run_eval(out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "predictions.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "resume with:" in err and str(out) in err


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
def test_a_full_disk_names_the_folder_and_keeps_the_results(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = disk / "run"
        proc = subprocess.run(_run_eval(out), cwd=ROOT, capture_output=True, text=True, timeout=300)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert "No space left on device" in lines[0] and str(out) in lines[0] and "resume with:" in lines[0]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# 7 ------------------------------------------------------------------ Python API edges
def test_api_edges(vit):
    model = vit("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.sim = 1e-7
    with torch.no_grad():
        assert model(torch.randn(0, 3, 224, 224)).shape == (0, 1000)  # like the unpatched model
    tomato.patch.timm(model)  # again: a no-op that keeps the settings
    assert model.sim == 1e-7
    with pytest.raises(ValueError, match="already patched with ToMato"):
        tomato.patch.tome(model)
    model.tokens = 10**7  # any count >= 1: more than the grid keeps every token
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert tomato.patch.state(model).tokens.tolist() == [196]
