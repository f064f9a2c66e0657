"""Issue 36, a third round of bad input: each case starts from the input a user gave."""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import tomato
from tomato.harness import cli, dispatch

ROOT = Path(__file__).resolve().parents[2]

from test_training import WNIDS, make_split_tree


class _Payload:
    """A pickle that runs code when it is loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.slow
def test_resuming_a_run_never_runs_code_from_its_checkpoint(tmp_path, capsys):
    tree = make_split_tree(tmp_path / "data", {"train": 4, "val": 1})
    out = tmp_path / "run"
    args = ["train", "--data", str(tree), "--out", str(out), "--recipe", "tiny", "--threads", "1", "--quiet"]
    assert cli.main(args) == 0
    marker = tmp_path / "ran"
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"phase": _Payload(marker), "epoch": 0}))
    capsys.readouterr()
    assert cli.main(args) == 2
    assert not marker.exists(), "the checkpoint's payload ran"
    (line,) = _errors(capsys)
    assert line.startswith("error:") and "checkpoint.pt" in line and "weights_only" in line


def test_a_skipped_photo_whose_name_has_quotes_and_commas_stays_one_csv_field(tmp_path):
    from tomato.harness import training

    text = training._csv_text(("path", "reason"), [('/x/a "b", c.JPEG', "corrupt: bad, bytes")])
    rows = list(csv.reader(text.splitlines()))
    assert rows == [["path", "reason"], ['/x/a "b", c.JPEG', "corrupt: bad, bytes"]]


@pytest.mark.parametrize("command", [
    ["agree", "--random-weights", "--data", "smoke", "--sims", "1e-7", "--keep"],
    ["fidelity", "--random-weights", "--data", "smoke", "--limit", "1", "--keep"],
    ["time", "--random-weights", "--data", "smoke", "--runs", "1", "--warmup", "0", "--images", "1"],
    ["bench", "--runs", "1", "--warmup", "0"],
])
def test_a_file_out_that_is_not_a_record_of_the_kind_is_left_alone(tmp_path, capsys, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"n_images": 3, "top1": 50.0}))
    for victim in (notes, summary):
        before = victim.read_bytes()
        assert cli.main([*command, "--out", str(victim), "--quiet"]) == 2
        assert victim.read_bytes() == before
        (line,) = _errors(capsys)
        assert line.startswith("error:") and str(victim) in line and "not a" in line


def test_the_readme_static_example_makes_no_host_sync(vit):
    model = vit("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.tokens, model.static = 138, True  # the README's line, as written
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        model(x)
        with dispatch.count() as counted:
            model(x)
    assert counted.syncs == 0, dict(counted.by_sync)


def test_a_class_folder_the_model_does_not_know_is_refused_even_with_a_smoke_wnid(tmp_path, capsys):
    tree = make_split_tree(tmp_path / "d", {"val": 1}, wnids=["n01440764", "n02123045"])
    assert cli.main(["eval", "--checkpoint", "deit-tiny-imagenette", "--data", str(tree / "val"),
                     "--out", str(tmp_path / "run"), "--quiet"]) == 2
    (line,) = _errors(capsys)
    assert line.startswith("error:") and "n02123045" in line
    assert not (tmp_path / "run").exists()


def test_a_fifo_and_a_dangling_link_are_skipped_for_good(tmp_path):
    from tomato.harness import data

    fifo, dangling = tmp_path / "x.JPEG", tmp_path / "y.JPEG"
    os.mkfifo(fifo)
    os.symlink(tmp_path / "gone.JPEG", dangling)
    ds = data.ImageNetFolder([data.Sample(fifo, 0, "n01440764"), data.Sample(dangling, 0, "n01440764")],
                             lambda im: im)
    bad = [ds[0], ds[1]]  # returns at once: a FIFO is never opened
    assert [b.kind for b in bad] == [data.CORRUPT, data.CORRUPT]
    assert "not a regular file" in bad[0].error and "link to nothing" in bad[1].error


@pytest.mark.parametrize("command, flag", [
    (["time", "--random-weights", "--budget-s", "inf"], "--budget-s inf"),
    (["time", "--random-weights", "--budget-s", "nan"], "--budget-s nan"),
    (["agree", "--random-weights", "--sims", "--keep", "--out", "a.json"], "--sims and --keep"),
    (["fidelity", "--random-weights", "--sims", "--keep", "--out", "f.json"], "--sims and --keep"),
    (["bench", "--static", "--tokens", "10000", "--runs", "1"], "--tokens 10000"),
])
def test_settings_that_cannot_be_met_are_refused_in_one_line(tmp_path, capsys, monkeypatch, command, flag):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*command, "--quiet"]) == 2
    (line,) = _errors(capsys)
    assert line.startswith("error:") and flag in line
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_carrying_code_is_refused_in_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    assert cli.main(["eval", "--checkpoint", str(evil), "--model", "deit_tiny_patch16_224", "--data", "smoke",
                     "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert not marker.exists()
    (line,) = _errors(capsys)
    assert line.startswith("error:") and "weights_only" in line


def test_a_budget_is_met_under_autocast(vit):
    model = vit("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.keep_ratio = 0.5
    torch.manual_seed(0)
    x = torch.randn(4, 3, 224, 224)
    with torch.inference_mode():
        model(x)
        plain = tomato.patch.state(model).tokens.tolist()
        with torch.autocast("cpu", torch.float16):
            model(x)
        half = tomato.patch.state(model).tokens.tolist()
    assert plain == half and max(half) <= 98


@pytest.mark.parametrize("case", ["first class unreadable", "last class unreadable", "val unreadable",
                                  "fewer photos than a batch"])
def test_train_refuses_data_it_cannot_learn_from_before_any_step(tmp_path, capsys, case):
    per = {"train": 1 if case == "fewer photos than a batch" else 3, "val": 1}
    tree = make_split_tree(tmp_path / "d", per)
    broken = {"first class unreadable": [tree / "train" / WNIDS[0]], "last class unreadable": [tree / "train" / WNIDS[1]],
              "val unreadable": [tree / "val" / w for w in WNIDS]}.get(case, [])
    for folder in broken:
        for photo in folder.iterdir():
            photo.write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(tree), "--out", str(out), "--recipe", "tiny", "--threads", "1", "--quiet"])
    (line,) = _errors(capsys)
    assert code == 2 and line.startswith("error:"), line
    want = {"first class unreadable": WNIDS[0], "last class unreadable": WNIDS[1], "val unreadable": "val photos",
            "fewer photos than a batch": "batch"}[case]
    assert want in line
    assert not (out / "model_card.json").exists() and not (out / "checkpoint.pt").exists()


def test_a_card_with_the_schema_but_a_missing_key_is_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "m"
    shutil.copytree(ROOT / "data" / "weights" / "deit-tiny-imagenette", folder)
    card = json.loads((folder / "model_card.json").read_text())
    del card["eval_transform"]
    (folder / "model_card.json").write_text(json.dumps(card))
    assert cli.main(["eval", "--checkpoint", str(folder / "model.safetensors"), "--data", "smoke",
                     "--out", str(tmp_path / "run"), "--quiet"]) == 2
    (line,) = _errors(capsys)
    assert line.startswith("error:") and "incomplete" in line and "eval_transform" in line


@pytest.mark.parametrize("call", ["forward_intermediates", "get_intermediate_layers", "set_grad_checkpointing",
                                  "torch.save"])
def test_timm_calls_a_patched_model_cannot_serve_are_refused_with_what_to_do(vit, tmp_path, call):
    import copy as copying
    import io

    model = vit("deit_tiny_patch16_224")
    tomato.patch.timm(model)
    model.sim = 1e-7
    x = torch.randn(1, 3, 224, 224)
    run = {"forward_intermediates": lambda: model.forward_intermediates(x),
           "get_intermediate_layers": lambda: model.get_intermediate_layers(x),
           "set_grad_checkpointing": lambda: model.set_grad_checkpointing(True),
           "torch.save": lambda: torch.save(model, io.BytesIO())}[call]
    with pytest.raises((NotImplementedError, TypeError)) as refused:
        run()
    assert "tomato.patch.remove(model)" in str(refused.value) and "\n" not in str(refused.value)
    # The plain timm model does all of it again once unpatched; a deep copy stays patched.
    twin = copying.deepcopy(model)
    assert tomato.patch.state(twin).settings.sim == 1e-7 and twin(x).shape == model(x).shape
    tomato.patch.remove(model)
    model.get_intermediate_layers(x)
    torch.save(model, io.BytesIO())


@pytest.mark.parametrize("r", [8, 40])
def test_tomato_then_tome_gives_each_photo_the_merges_of_a_batch_of_one(r):
    from tomato.harness import data, models

    model, _ = models.load(None, checkpoint="deit-tiny-imagenette")
    transform = data.transform_for(model)
    x = torch.stack([transform(data.load_image(s.path)) for s in data.smoke_samples()[:4]])
    tomato.patch.timm(model.eval())
    model.sim, model.r = 1e-30, r  # 63 to 187 tokens: a padded batch; at r=40 ToMe's cap binds late
    with torch.inference_mode():
        together = model(x)
        kept = tomato.patch.state(model).tokens.tolist()
        alone = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
    assert len(set(kept)) > 1, kept
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_tokens_and_flops_follow_the_size_the_model_is_fed(vit):
    from tomato.harness import evaluate, flops

    model = vit("deit_tiny_patch16_224", dynamic_img_size=True)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 48, 48)}  # a card's size, as load sets it
    assert flops.input_patches(model) == 9 and flops.dims_of(model).num_patches == 9
    assert evaluate.token_stats(model, 2)[0] == [9, 9]
    assert flops.input_patches(vit("deit_tiny_patch16_224")) == 196


def test_a_training_photo_whose_name_is_not_utf8_is_named(tmp_path, capsys):
    tree = make_split_tree(tmp_path / "d", {"train": 3, "val": 1})
    folder = tree / "train" / WNIDS[0]
    os.rename(bytes(folder / "000.JPEG"), bytes(folder) + b"/caf\xe9.JPEG")
    assert cli.main(["train", "--data", str(tree), "--out", str(tmp_path / "run"), "--recipe", "tiny",
                     "--quiet"]) == 2
    (line,) = _errors(capsys)
    assert line.startswith("error:") and "caf" in line and "UTF-8" in line


def test_notebook_parameters_name_an_unknown_or_partial_trained_model_in_one_line(tmp_path, monkeypatch):
    from tomato.book import parameters
    from tomato.harness import models

    with pytest.raises(parameters.Invalid) as unknown:
        parameters.check("trained_model", "no-such-model")
    assert str(unknown.value).startswith("error: parameter trained_model") and "deit-tiny-imagenette" in str(unknown.value)
    weights = tmp_path / "weights"
    shutil.copytree(ROOT / "data" / "weights" / "deit-tiny-imagenette", weights / "partial",
                    ignore=shutil.ignore_patterns("*.safetensors"))
    card = json.loads((weights / "partial" / "model_card.json").read_text())
    del card["eval_transform"]
    (weights / "partial" / "model_card.json").write_text(json.dumps(card))
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights)
    with pytest.raises(parameters.Invalid) as partial:
        parameters.check("trained_model", "partial")
    assert "incomplete" in str(partial.value) and "\n" not in str(partial.value)


def test_a_notebook_skips_an_oversized_photo_and_names_it(tmp_path, monkeypatch, vit):
    from PIL import Image as PILImage

    from tomato.book import notebook
    from tomato.harness import data

    big = tmp_path / "big.png"
    PILImage.new("RGB", (64, 64)).save(big)
    monkeypatch.setattr(data, "MAX_PIXELS", 100)
    images, _, kept, skipped = notebook.read_photos([data.Sample(big, 0, "n01440764")], vit("deit_tiny_patch16_224"))
    assert images is None and kept == [] and "DecompressionBomb" in skipped[0][1]


def test_agree_on_photos_that_all_fail_writes_nothing(tmp_path, capsys):
    tree = make_split_tree(tmp_path / "d", {"val": 1})
    for photo in (tree / "val").rglob("*.JPEG"):
        photo.write_bytes(b"not a jpeg")
    out = tmp_path / "a.json"
    assert cli.main(["agree", "--random-weights", "--model", "deit_tiny_patch16_224", "--data", str(tree / "val"),
                     "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    errors = [line for line in _errors(capsys) if line.startswith("error:")]
    assert len(errors) == 1 and "could be read" in errors[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_train_and_record_refuse_a_cuda_device_this_machine_lacks(tmp_path, capsys):
    tree = make_split_tree(tmp_path / "d", {"train": 1, "val": 1})
    assert cli.main(["train", "--data", str(tree), "--out", str(tmp_path / "t"), "--device", "cuda"]) == 2
    assert cli.main(["record", "--checkpoint", "deit-tiny-imagenette", "--data", str(tree / "val"),
                     "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
    errors = _errors(capsys)
    assert len(errors) == 2 and all(e.startswith("error: --device cuda") for e in errors)
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()
