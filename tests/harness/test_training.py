"""python -m tomato train: resume after kill -9, refusals before compute, labels, the committed model."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from tomato.harness import cli, data, modelcard, models, recipe, trainset

ROOT = Path(__file__).resolve().parents[2]
IMAGENETTE = ROOT.parent / "shared" / "imagenette"
WNIDS = ["n01440764", "n02102040"]


def make_split_tree(root: Path, per_class: dict[str, int], wnids=WNIDS, size: int = 64) -> Path:
    """``root/<split>/<wnid>/<i>.JPEG``: flat colours per class plus noise, so a few steps learn them."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = (rng.random((size, size, 3)) * 80 + c * 120).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.JPEG")
    return root


def _train_cmd(data_root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "tomato", "train", "--data", str(data_root), "--out", str(out),
            "--recipe", "tiny", "--threads", "1", "--quiet"]


def _curve_rows(out: Path) -> int:
    try:
        return len((out / "curve.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, killed_when):
    tree = make_split_tree(tmp_path / "data", {"train": 40, "val": 6})
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    whole = tmp_path / "whole"
    subprocess.run(_train_cmd(tree, whole), check=True, env=env, cwd=ROOT, capture_output=True)

    broken = tmp_path / "broken"
    # Two epochs done (the teacher's and the student's first): the run is inside the
    # second student epoch, where Mixup, drop-path and the crops all draw numbers.
    killed_when(_train_cmd(tree, broken), lambda: _curve_rows(broken) >= 2, ROOT, env)
    assert not (broken / modelcard.CARD_FILE).exists()

    subprocess.run(_train_cmd(tree, broken), check=True, env=env, cwd=ROOT, capture_output=True)
    a = json.loads((whole / modelcard.CARD_FILE).read_text())
    b = json.loads((broken / modelcard.CARD_FILE).read_text())
    assert a["weights_sha256"] == b["weights_sha256"]
    assert [r["train_loss"] for r in a["curve"]] == [r["train_loss"] for r in b["curve"]]
    # The card says how the model was made and how to feed it.
    assert a["classes"][0] == {"index": 0, "wnid": WNIDS[0], "name": "tench"}
    assert a["eval_transform"]["size"] == 48 and a["val"]["images"] == 12
    assert a["data"]["train_images"] == 80 and len(a["data"]["train_files_sha256"]) == 64
    assert [p["name"] for p in a["recipe"]["phases"]] == ["teacher", "low-res", "fine-tune"]

    # The trained model loads from its card in every command (class count, classes, transform).
    model, weights = models.load(checkpoint=whole / modelcard.WEIGHTS_FILE)
    assert model.num_classes == 2 and weights.classes == tuple(WNIDS) and weights.pretrained
    assert weights.sha256 == a["weights_sha256"]


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _each_refused(capsys, base: list[str], tmp_path: Path, refusals: dict[str, list[str]]) -> None:
    """Each ``base + extra`` is refused with one ``error:`` line naming ``expected``, before
    any compute, leaving no run folder behind."""
    for expected, extra in refusals.items():
        out = tmp_path / f"refused-{len(extra)}"
        assert cli.main([*base, "--out", str(out), *extra]) == 2
        lines = _error_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
        assert not out.exists()


def test_bad_layouts_get_one_error_line_before_compute(tmp_path, capsys):
    base = make_split_tree(tmp_path / "ok", {"train": 2, "val": 1})
    cases = {}
    # a class folder only in val
    other = make_split_tree(tmp_path / "other", {"train": 2, "val": 1})
    (other / "val" / "n03000684").mkdir()
    Image.new("RGB", (8, 8)).save(other / "val" / "n03000684" / "a.JPEG")
    cases["different classes"] = other
    # an empty class folder
    empty = make_split_tree(tmp_path / "empty", {"train": 2, "val": 1})
    for p in (empty / "train" / WNIDS[1]).iterdir():
        p.unlink()
    cases["hold no images"] = empty
    # no val split at all
    noval = make_split_tree(tmp_path / "noval", {"train": 2})
    cases["is not a folder"] = noval
    for expected, root in cases.items():
        assert cli.main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "tiny",
                         "--quiet"]) == 2
        lines = _error_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
        assert not (tmp_path / "run").exists()

    # an --out holding files of something else, then one holding another run
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert cli.main(["train", "--data", str(base), "--out", str(foreign), "--recipe", "tiny", "--quiet"]) == 2
    assert "holds no training run" in _error_lines(capsys)[0]
    assert (foreign / "notes.txt").read_text() == "mine"
    other_run = tmp_path / "other-run"
    other_run.mkdir()
    (other_run / "config.json").write_text(json.dumps({"data": "elsewhere"}))
    assert cli.main(["train", "--data", str(base), "--out", str(other_run), "--recipe", "tiny", "--quiet"]) == 2
    assert "holds another training run" in _error_lines(capsys)[0]

    with pytest.raises(ValueError, match="not a multiple of the 16-pixel patch"):
        recipe.Phase("x", "student", "deit_tiny_patch16_224", epochs=1, resolution=100, batch_size=2,
                      lr=1e-3).validate()
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe.recipe("nope")


def test_corrupt_photo_is_skipped_and_named(tmp_path):
    tree = make_split_tree(tmp_path / "d", {"train": 2, "val": 1})
    bad = tree / "train" / WNIDS[0] / "zz_bad.JPEG"
    bad.write_bytes(b"not a jpeg")
    train_files, _ = trainset.check_splits(tree)
    split = trainset.decode_split(train_files, size=32, progress=False)
    assert len(split.labels) == 4 and split.labels.tolist() == [0, 0, 1, 1]
    assert [p for p, _ in split.skipped] == [bad] and "corrupt" in split.skipped[0][1]


def test_labels_follow_the_head(tmp_path):
    tree = make_split_tree(tmp_path / "d", {"val": 1}, wnids=["n01440764", "n03888257"])
    samples = data.scan_imagenet_folder(tree / "val")
    # An ImageNet-1k head: each wnid keeps its ImageNet index (parachute is 701).
    assert [s.label for s in data.label_samples(samples, None, 1000)] == [0, 701]
    # A head trained here: the card's order, sorted wnids -> 0..9.
    imagenette = sorted(["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
                         "n03417042", "n03425413", "n03445777", "n03888257"])
    assert [s.label for s in data.label_samples(samples, imagenette, 10)] == [0, 9]
    with pytest.raises(ValueError, match="21843 outputs but the labels are ImageNet-1k"):
        data.label_samples(samples, None, 21843)
    with pytest.raises(ValueError, match="does not know"):
        data.label_samples(samples, imagenette[:2], 2)
    with pytest.raises(ValueError, match="names 10 classes but its head has 1000"):
        data.label_samples(samples, imagenette, 1000)


def test_a_continuing_recipe_starts_from_the_run_it_continues(tmp_path, capsys, monkeypatch):
    from tomato.harness import training

    tree = make_split_tree(tmp_path / "d", {"train": 8, "val": 2})
    first = tmp_path / "first"
    assert cli.main(["train", "--data", str(tree), "--out", str(first), "--recipe", "tiny", "--threads", "1",
                     "--quiet"]) == 0
    capsys.readouterr()
    base = ["train", "--data", str(tree), "--recipe", "tiny-more", "--threads", "1", "--quiet"]
    refusals = {  # each refused with one line, before any compute, leaving no folder behind
        "pass --init": [],
        "no model card beside it": ["--init", str(tmp_path / "loose.safetensors")],
        "file not found": ["--init", str(tmp_path / "typo.safetensors")],
        "starts from random init": ["--init", str(first / modelcard.WEIGHTS_FILE), "--recipe", "tiny"],
    }
    (tmp_path / "loose.safetensors").write_bytes(b"")
    _each_refused(capsys, base, tmp_path, refusals)

    # Float32 where the CPU has no bfloat16 hardware, recorded in the card.
    monkeypatch.setattr(training, "native_bf16", lambda: False)
    second = tmp_path / "second"
    assert cli.main([*base, "--out", str(second), "--init", str(first / modelcard.WEIGHTS_FILE)]) == 0
    a = json.loads((first / modelcard.CARD_FILE).read_text())
    b = json.loads((second / modelcard.CARD_FILE).read_text())
    assert b["parent"]["weights_sha256"] == a["weights_sha256"] and b["parent"]["curve"] == a["curve"]
    assert b["precision"] == "float32" and b["weights_sha256"] != a["weights_sha256"]
    assert [r["phase"] for r in b["curve"]] == ["low-res", "fine-tune"]
    # The student really starts from the first run's weights: its first epoch's loss is
    # that of a trained model, not of random init on the same steps.
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(recipe, "RECIPES", {**recipe.RECIPES, "tiny-more": dataclasses.replace(
        recipe.RECIPES["tiny-more"], continues="")})
    assert cli.main(["train", "--data", str(tree), "--recipe", "tiny-more", "--threads", "1", "--quiet",
                     "--out", str(fresh)]) == 0
    c = json.loads((fresh / modelcard.CARD_FILE).read_text())
    assert b["curve"][0]["train_loss"] < c["curve"][0]["train_loss"]
    monkeypatch.undo()
    # Weights that are not those their card describes are refused.
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / modelcard.CARD_FILE).write_text((first / modelcard.CARD_FILE).read_text())
    (swapped / modelcard.WEIGHTS_FILE).write_bytes((fresh / modelcard.WEIGHTS_FILE).read_bytes())
    assert cli.main([*base, "--out", str(tmp_path / "swap"), "--init", str(swapped / modelcard.WEIGHTS_FILE)]) == 2
    assert "not those its model card describes" in _error_lines(capsys)[0]
    # A model of another recipe is not the one this recipe continues.
    assert cli.main([*base, "--out", str(tmp_path / "wrong"), "--init", str(second / modelcard.WEIGHTS_FILE)]) == 2
    assert "continues a deit_tiny_distilled_patch16_224 of recipe 'tiny'" in _error_lines(capsys)[0]


def test_a_teacher_from_an_earlier_run_replaces_the_teacher_phase(tmp_path, capsys):
    from tomato.harness import training
    from tomato.harness.provenance import state_dict_sha256

    tree = make_split_tree(tmp_path / "d", {"train": 8, "val": 2})
    first = tmp_path / "first"
    base = ["train", "--data", str(tree), "--recipe", "tiny", "--threads", "1", "--quiet"]
    assert cli.main([*base, "--out", str(first)]) == 0
    taught = first / training.TEACHER_FILE
    sha = state_dict_sha256(models.read_checkpoint(taught))
    assert json.loads((first / modelcard.CARD_FILE).read_text())["teacher_trained"]["weights_sha256"] == sha
    taught.unlink()  # as if stopped before the file was written: the same command writes it again
    assert cli.main([*base, "--out", str(first)]) == 0
    assert state_dict_sha256(models.read_checkpoint(taught)) == sha
    refusals = {  # one line each, before any compute, no folder left behind
        "file not found": ["--teacher", str(tmp_path / "typo.safetensors")],
        "not a resnet10t with 2 classes": ["--teacher", str(first / modelcard.WEIGHTS_FILE)],
        "has no teacher phase": ["--teacher", str(taught), "--recipe", "tiny-more", "--init",
                                 str(first / modelcard.WEIGHTS_FILE)],
    }
    _each_refused(capsys, base, tmp_path, refusals)
    second = tmp_path / "second"
    assert cli.main([*base, "--out", str(second), "--teacher", str(taught)]) == 0
    card = json.loads((second / modelcard.CARD_FILE).read_text())
    assert [r["phase"] for r in card["curve"]] == ["low-res", "low-res", "fine-tune"]  # no teacher epoch
    assert card["teacher"]["weights_sha256"] == sha
    # The student learns from that teacher: the same run with the teacher's classifier
    # negated (its hard labels flip between the two classes) distils into other weights.
    noisy = {k: -v if k.startswith("fc.") else v for k, v in models.read_checkpoint(taught).items()}
    save_file(noisy, str(tmp_path / "noisy.safetensors"))
    third = tmp_path / "third"
    assert cli.main([*base, "--out", str(third), "--teacher", str(tmp_path / "noisy.safetensors")]) == 0
    assert json.loads((third / modelcard.CARD_FILE).read_text())["weights_sha256"] != card["weights_sha256"]


def test_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    import torch

    from tomato.harness import training

    for flags, expected in (({}, False), ({"_is_avx512_bf16_supported": True}, True),
                            ({"_is_amx_tile_supported": True}, True)):
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            monkeypatch.setattr(torch.cpu, name, lambda v=flags.get(name, False): v, raising=False)
        assert training.native_bf16() is expected


COMMITTED = models.WEIGHTS_DIR / "deit-tiny-imagenette"


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (IMAGENETTE / "val").is_dir(), reason=f"{IMAGENETTE} absent")
@pytest.mark.skipif(not (COMMITTED / modelcard.WEIGHTS_FILE).is_file(), reason="no committed model")
def test_committed_model_keeps_its_card_top1_on_a_fixed_500_photo_subset(tmp_path):
    from tomato.harness.evaluate import evaluate

    card = modelcard.read_card(COMMITTED)
    model, weights = models.load(checkpoint=COMMITTED / modelcard.WEIGHTS_FILE)
    assert weights.sha256 == card.raw["weights_sha256"]
    samples = data.label_samples(data.scan_imagenet_folder(IMAGENETTE / "val"), weights.classes,
                                 model.num_classes)
    subset = [s for c in range(10) for s in [x for x in samples if x.label == c][:50]]  # 50 per class
    assert len(subset) == 500 and len({s.label for s in subset}) == 10
    summary = evaluate(model, weights, "deit", subset, tmp_path / "eval", data_label="imagenette-val-500",
                       batch_size=50, num_workers=0, progress=False)
    assert summary["top1"] >= card.top1 - 1.0, (summary["top1"], card.top1)
