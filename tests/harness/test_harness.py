"""Variants, accuracy runs (resume, refusal to mix), timing runs, sweeps and the CLI."""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tomato.harness import data, evaluate, models, speed, sweep, variants
from tomato.harness.cli import main

TINY = "deit_tiny_patch16_224"


@pytest.fixture(scope="module")
def tiny():
    return models.load(TINY, pretrained=False, seed=0)


@pytest.fixture()
def image_folder(tmp_path: Path) -> list[data.Sample]:
    """A small ImageNet-layout folder of real photos (the smoke set) plus one corrupt file."""
    root = tmp_path / "val"
    for s in data.smoke_samples()[:4]:
        d = root / s.wnid
        d.mkdir(parents=True, exist_ok=True)
        data.load_image(s.path).resize((160, 120)).save(d / (s.path.stem + ".JPEG"))
    bad = root / data.smoke_samples()[0].wnid / "corrupt.JPEG"
    bad.write_bytes(b"definitely not a jpeg")
    return data.scan_imagenet_folder(root)


# ---------------------------------------------------------------- variants


@pytest.mark.parametrize(
    "spec,canonical",
    [
        ("deit", "deit"),
        ("none", "deit"),
        ("tome:r=2", "tome:r=2"),
        ("tomato:sim=1e-7", "tomato:sim=1e-07"),
        ("tomato:keep=0.85", "tomato:keep_ratio=0.85"),
        ("tomato: sim=1e-7 , method=parallel", "tomato:method=parallel,sim=1e-07"),
        ("tomato:tokens=150,metric=attention", "tomato:metric=attention,tokens=150"),
    ],
)
def test_variant_specs_parse_to_canonical_form(spec, canonical):
    assert variants.parse(spec).spec == canonical
    assert variants.parse(variants.parse(spec).spec).spec == canonical


@pytest.mark.parametrize(
    "spec",
    ["resnet", "tome", "tome:r=-1", "tome:r=x", "tomato", "tomato:sim=1e-7,keep=0.5",
     "tomato:sim=-1", "tomato:sim=nan", "tomato:keep=0", "tomato:keep=1.5", "tomato:sim=1e-7,method=bfs",
     "tomato:foo=1", "deit:r=2", "tomato:sim"],
)
def test_bad_variant_specs_are_rejected(spec):
    with pytest.raises(ValueError):
        variants.parse(spec)


def test_variant_apply_switches_cleanly(tiny):
    model, _ = tiny
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
        variants.parse("tome:r=4").apply(model)
        assert model.r == [4] * 12
        variants.parse("tomato:keep=0.5,method=parallel").apply(model)
        model(x)
        assert model.method == "parallel" and model.keep_ratio == 0.5
        variants.parse("deit").apply(model)
        assert not hasattr(model, "_tomato")
        assert torch.equal(model(x), ref)


# ---------------------------------------------------------------- accuracy runs


def read_predictions(out: Path) -> list[dict]:
    with (out / "predictions.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_eval_end_to_end_with_a_corrupt_image(tiny, image_folder, tmp_path):
    model, weights = tiny
    out = tmp_path / "run"
    s = evaluate.evaluate(model, weights, "tomato:keep=0.5", image_folder, out, data_label="tmp",
                          batch_size=2, progress=False)
    assert s["n_images"] == 4 and s["n_bad"] == 1 and s["complete"]
    assert 0 <= s["top1"] <= 100 and s["top1"] <= s["top5"]
    assert s["tokens_max"] <= 98
    rows = read_predictions(out)
    assert [int(r["label"]) for r in rows] == [image_folder[int(r["index"])].label for r in rows]
    bad = (out / "bad_images.csv").read_text()
    assert "corrupt.JPEG" in bad
    prov = json.loads((out / "provenance.json").read_text())
    for key in ("model", "weights_source", "weights_sha256", "variant", "data", "n_images", "torch",
                "timm", "git", "date_utc", "machine"):
        assert key in prov, key
    assert prov["weights_source"] == "random-init:seed=0"


def test_eval_resumes_after_an_interruption_with_the_same_numbers(tiny, image_folder, tmp_path):
    model, weights = tiny
    one_shot = evaluate.evaluate(model, weights, "tomato:sim=1e-20", image_folder, tmp_path / "a",
                                 data_label="tmp", batch_size=2, progress=False)
    # "Kill" after the first batch, then rerun the same command.
    part = evaluate.evaluate(model, weights, "tomato:sim=1e-20", image_folder, tmp_path / "b",
                             data_label="tmp", batch_size=2, max_batches=1, progress=False)
    assert not part["complete"] and part["n_images"] + part["n_bad"] == 2
    resumed = evaluate.evaluate(model, weights, "tomato:sim=1e-20", image_folder, tmp_path / "b",
                                data_label="tmp", batch_size=2, progress=False)
    assert resumed["complete"]
    for key in ("n_images", "n_bad", "top1", "top5", "tokens_mean", "tokens_min", "tokens_max"):
        assert resumed[key] == one_shot[key], key
    a = [{k: r[k] for k in ("index", "top5", "tokens")} for r in read_predictions(tmp_path / "a")]
    b = [{k: r[k] for k in ("index", "top5", "tokens")} for r in read_predictions(tmp_path / "b")]
    assert a == b


def test_rerunning_a_finished_eval_rewrites_nothing(tiny, image_folder, tmp_path):
    # A recording run again over finished folders must leave them byte for byte: no
    # session of nothing appended to the provenance, no speed dropped from the summary.
    model, weights = tiny
    first = evaluate.evaluate(model, weights, "tomato:sim=1e-20", image_folder, tmp_path / "r",
                              data_label="tmp", batch_size=2, progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file() and p.name != ".lock"}
    again = evaluate.evaluate(model, weights, "tomato:sim=1e-20", image_folder, tmp_path / "r",
                              data_label="tmp", batch_size=2, progress=False)
    after = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before and again == first
    assert "images_per_s_last_session" in again


def test_eval_refuses_to_mix_runs(tiny, image_folder, tmp_path):
    model, weights = tiny
    evaluate.evaluate(model, weights, "deit", image_folder, tmp_path / "r", data_label="tmp",
                      batch_size=4, progress=False)
    with pytest.raises(ValueError, match="variant"):
        evaluate.evaluate(model, weights, "tome:r=2", image_folder, tmp_path / "r", data_label="tmp",
                          batch_size=4, progress=False)


# ---------------------------------------------------------------- timing runs


def test_measure_variants_on_a_fake_clock(tiny):
    model, _ = tiny
    ticks = itertools.count(0.0, 0.5)  # every clock read advances 0.5 s
    rows = speed.measure_variants(model, ["deit", "tome:r=8", "tomato:keep=0.5"],
                                  torch.randn(2, 3, 224, 224), batch_sizes=[1, 3], runs=4, warmup=1,
                                  clock=lambda: next(ticks), progress=False)
    assert [(r["variant"], r["batch_size"]) for r in rows] == [
        ("deit", 1), ("tome:r=8", 1), ("tomato:keep_ratio=0.5", 1),
        ("deit", 3), ("tome:r=8", 3), ("tomato:keep_ratio=0.5", 3)]
    for r in rows:
        assert r["median_s"] == pytest.approx(0.5) and r["speedup"] == pytest.approx(1.0)
        assert r["throughput_img_s"] == pytest.approx(r["batch_size"] / 0.5)
    assert all(r["speedup_low"] == pytest.approx(1.0) == r["speedup_high"] for r in rows)
    by = {r["variant"]: r for r in rows[:3]}
    assert by["deit"]["tokens_mean"] == 196 and by["deit"]["ideal_speedup"] == pytest.approx(1.0)
    assert by["tomato:keep_ratio=0.5"]["tokens_mean"] <= 98
    assert by["tomato:keep_ratio=0.5"]["ideal_speedup"] > 1.5
    assert 1.0 < by["tome:r=8"]["ideal_speedup"] < by["tomato:keep_ratio=0.5"]["ideal_speedup"]
    assert not hasattr(model, "_tomato")  # left as the first (baseline) variant


# ---------------------------------------------------------------- sweeps and the CLI


def test_sweep_writes_a_tidy_csv_and_reuses_finished_work(tiny, image_folder, tmp_path, monkeypatch):
    model, weights = tiny
    specs = ["deit", "tome:r=4", "tomato:keep=0.7"]
    rows = sweep.sweep(model, weights, specs, image_folder, tmp_path, data_label="tmp", batch_size=4,
                       time_runs=2, time_warmup=0, progress=False)
    with (tmp_path / "sweep.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["variant"] for r in table] == ["deit", "tome:r=4", "tomato:keep_ratio=0.7"]
    assert list(table[0]) == list(sweep.COLUMNS)
    assert table[1]["parameter"] == "r" and table[2]["parameter"] == "keep_ratio"
    assert float(table[2]["tokens_mean"]) <= 0.7 * 196 + 1
    # The timing record says what a page writes about it: protocol, rounds, images timed.
    config = json.loads((tmp_path / "timing.json").read_text())["config"]
    n_timed = 4  # the readable photos: the corrupt one is skipped
    assert (config["protocol"], config["runs"], config["images"]) == ("robust", 2, n_timed)
    assert f"rotating through {n_timed} images" in speed.describe(config)
    # A rerun reuses the finished evaluations and timing run: nothing is measured again.
    monkeypatch.setattr(sweep, "measure_variants", lambda *a, **k: pytest.fail("re-timed"))
    again = sweep.sweep(model, weights, specs, image_folder, tmp_path, data_label="tmp", batch_size=4,
                        time_runs=2, time_warmup=0, progress=False)
    assert again == rows


def test_cli_eval_smoke_set(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["eval", "--model", TINY, "--random-weights", "--variant", "tomato:keep=0.8",
               "--data", "smoke", "--out", str(tmp_path / "cli"), "--batch-size", "4", "--workers", "0",
               "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_images"] == len(data.smoke_samples()) and summary["pretrained"] is False


def test_cli_reports_bad_input_clearly(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "x.JPEG")
    rc = main(["eval", "--model", TINY, "--random-weights", "--data", str(tmp_path / "flat"),
               "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and str(tmp_path / "flat") in capsys.readouterr().err
    rc = main(["eval", "--model", TINY, "--variant", "tomato:sim=-1", "--random-weights",
               "--out", str(tmp_path / "o2"), "--quiet"])
    assert rc == 2 and "sim" in capsys.readouterr().err


def test_cli_fidelity_smoke_set(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "f" / "fidelity.json"
    rc = main(["fidelity", "--model", TINY, "--random-weights", "--data", "smoke", "--limit", "2",
               "--batch-size", "2", "--keep", "0.7", "--quiet", "--out", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["provenance"]["n_images"] == 2 and rec["provenance"]["model"] == TINY
    assert {r["index"] for r in rec["rows"]} == {0, 1}
    assert "unpatched model" in capsys.readouterr().out
    # A bad --out or --limit is refused before any model is loaded.
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded a model"))
    assert main(["fidelity", "--model", TINY, "--random-weights", "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["fidelity", "--model", TINY, "--limit", "0", "--out", str(out)]) == 2
    assert "--limit" in capsys.readouterr().err


def test_cli_bench_flags_reach_bench(tmp_path, capsys, monkeypatch):
    from tomato.harness import bench

    seen = {}

    def fake_run(model_name, **kw):
        seen.update(kw)
        return [bench.Row(name="merge step: parallel, tokens=100", median_ms=1.0, iqr_ms=0.1, ratio=1.0, batch=b)
                for b in kw["batch_sizes"]]

    monkeypatch.setattr(bench, "run", fake_run)
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", TINY, "--batch-sizes", "1", "3", "--tokens", "100", "--runs", "2",
                 "--out", str(out)]) == 0
    assert seen["batch_sizes"] == [1, 3] and seen["tokens"] == 100
    rec = json.loads(out.read_text())
    assert [r["batch"] for r in rec["rows"]] == [1, 3] and rec["provenance"]["tokens"] == 100


def test_cli_static_bench_writes_a_static_record(tmp_path, monkeypatch):
    from tomato.harness import bench, records

    def fake_static(model_name, **kw):
        return [bench.Row(name="eager: unpatched", median_ms=1.0, iqr_ms=0.1, ratio=1.0, batch=1)]

    monkeypatch.setattr(bench, "static_run", fake_static)
    out = tmp_path / "bench-static_x.json"
    assert main(["bench", "--static", "--model", TINY, "--batch-sizes", "1", "--tokens", "100", "--runs", "2",
                 "--out", str(out)]) == 0
    assert records.find("static", tmp_path) == [(out, records.read("static", out))]


def test_timing_batches_rotate_through_every_image():
    images = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    got = [b[:, 0, 0, 0].tolist() for b in speed.batches(images, 2)]
    assert got == [[0.0, 1.0], [2.0, 0.0], [1.0, 2.0]]
    # Batches repeat after M / gcd(M, B): 4 images in batches of 2 are two batches, each image once.
    four = torch.arange(4.0).view(4, 1, 1, 1)
    assert [b[:, 0, 0, 0].tolist() for b in speed.batches(four, 2)] == [[0.0, 1.0], [2.0, 3.0]]


def test_sweep_refuses_a_folder_in_use_and_leaves_no_new_folder(tiny, image_folder, tmp_path, monkeypatch):
    from tomato.harness.results import RunFolderBusy, RunStore

    model, weights = tiny
    monkeypatch.setattr(sweep, "evaluate", lambda *a, **k: pytest.fail("evaluated a folder in use"))
    (tmp_path / "busy").mkdir()
    lock = RunStore.lock(tmp_path / "busy")
    try:
        with pytest.raises(RunFolderBusy, match="in use by another run"):
            sweep.sweep(model, weights, ["deit"], image_folder, tmp_path / "busy", data_label="tmp")
    finally:
        lock.release()
    monkeypatch.setattr(sweep, "evaluate", lambda *a, **k: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        sweep.sweep(model, weights, ["deit"], image_folder, tmp_path / "new", data_label="tmp")
    assert not (tmp_path / "new").exists()


def test_sweep_takes_evaluates_keywords_and_refuses_others_before_any_folder(tiny, image_folder, tmp_path):
    model, weights = tiny
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")  # a folder a sweep would refuse: not reached
    with pytest.raises(TypeError, match="batchsize"):
        sweep.sweep(model, weights, ["deit"], image_folder, tmp_path / "mine", data_label="tmp", batchsize=4)
    with pytest.raises(TypeError, match="data_label"):
        sweep.sweep(model, weights, ["deit"], image_folder, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_bench_gives_each_whole_forward_an_interval_around_its_ratio(vit):
    """Forward rows carry 95% intervals of their ratio to the unpatched forward (and to the
    oracle, where they have one) from the same run's rounds; merge-step rows, shares, none."""
    from tomato.harness import bench

    model = vit("deit_tiny_patch16_224", depth=2).eval()
    rows = bench.run(model=model, runs=5, warmup=1, batch_sizes=(1,), tokens=100)
    forwards = [r for r in rows if r.name.startswith("forward")]
    assert forwards and all(r.ratio_low <= r.ratio <= r.ratio_high for r in forwards)
    with_oracle = [r for r in forwards if r.vs_oracle is not None]
    assert with_oracle and all(r.vs_oracle_low <= r.vs_oracle <= r.vs_oracle_high for r in with_oracle)
    unpatched = next(r for r in forwards if r.name == "forward: unpatched")
    assert unpatched.ratio_low == unpatched.ratio_high == 1.0
    assert all(r.ratio_low is None for r in rows if r.name.startswith("merge step"))
