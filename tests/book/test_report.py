"""tomato.book (runs, measures, tables, claims, figures) and tomato.book.paper on small hand-made result folders (no model needed)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomato.book import claims, notes, figures, measures, paper, tables
from tomato.harness import speed
from tomato.book import runs as book_runs
from tomato.harness.results import RunStore
from tomato.harness.sweep import COLUMNS, slug
from tomato.harness import variants
from tomato.harness.variants import parse

# Baseline top-1 per image (index -> class). Labels equal these on images 0-2 only.
BASE_TOP1 = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
LABELS = [5, 6, 7, 0, 0, 0, 0, 0, 0, 0]


def prov(date: str = "2026-01-01T00:00:00+00:00") -> dict:
    return {"model": "deit_base_patch16_224", "weights_source": "random-init:seed=0",
            "weights_sha256": "ab" * 32, "pretrained": False, "data": "/data/sample/val",
            "n_images": 10, "python": "3.11.7", "torch": "2.14.1", "timm": "1.0.31",
            "cpu_model": "Test CPU", "gpu_name": "none (CUDA not available)",
            "machine": {"cpu_count": 2, "torch_threads": 2, "platform": "Linux-test",
                        "board_model": "absent (not a Jetson)",
                        "power_mode": "absent (no nvpmodel; not a Jetson)"},
            "git": {"commit": "0123456789abcdef", "dirty": True, "untracked": 0},
            "date_utc": date, "hostname": "box"}


def write_variant(run: Path, spec: str, top1: list[int], tokens: list[int], *, n_total: int = 10,
                  prefix: int = 1, per_block: list[float] | None = None, date: str | None = None) -> Path:
    """A variant folder written by the real RunStore (same format as an evaluation)."""
    v = parse(spec)
    config = {"kind": "eval", "model": "deit_base_patch16_224", "weights_source": "random-init:seed=0",
              "weights_sha256": "ab" * 32, "pretrained": False, "variant": v.spec,
              "data": "/data/sample/val", "n_images": n_total, "images_sha": "x"}
    store = RunStore.open(run / slug(v), config, prov(date or "2026-01-01T00:00:00+00:00"))
    rows = []
    for i, (p, t) in enumerate(zip(top1, tokens)):
        top5 = [p, 100, 101, 102, 103]
        rows.append({"index": i, "path": f"val/n{i:08d}/{i}.JPEG", "label": LABELS[i], "top5": top5,
                     "correct1": p == LABELS[i], "correct5": LABELS[i] in top5, "tokens": t,
                     "tokens_per_block": per_block[i] if per_block else t + prefix})
    store.append(rows)
    store.summary({"variant": v.spec, "pretrained": False, "weights_source": "random-init:seed=0"})
    return run / slug(v)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "results" / "sample_run"
    write_variant(run, "deit", BASE_TOP1, [196] * 10, per_block=[197.0] * 10)
    tome = list(BASE_TOP1)
    tome[9] = 99  # one changed prediction
    write_variant(run, "tome:r=2", tome, [194] * 10, per_block=[184.0] * 10,
                  date="2026-01-02T00:00:00+00:00")
    tomato = list(BASE_TOP1)
    tomato[3], tomato[4] = 0, 1  # two changed predictions; image 3 becomes correct
    # tokens kept: 196*(1-0.10)=176.4 -> 176 ... cut between 5.1% and 20.9%
    write_variant(run, "tomato:sim=1e-7", tomato, [186, 155, 176, 170, 180, 160, 175, 165, 185, 168])
    timing_rows = [
        {"variant": "deit", "batch_size": 1, "median_s": 0.40, "iqr_s": 0.02, "q1_s": 0.39, "q3_s": 0.41,
         "paper_mean_s": 0.45, "throughput_img_s": 2.5, "speedup": 1.0, "gflops": 35.1, "ideal_speedup": 1.0},
        {"variant": "tome:r=2", "batch_size": 1, "median_s": 0.32, "iqr_s": 0.02, "q1_s": 0.31, "q3_s": 0.33,
         "paper_mean_s": 0.35, "throughput_img_s": 3.125, "speedup": 1.25, "gflops": 30.0, "ideal_speedup": 1.17},
        {"variant": "tomato:sim=1e-07", "batch_size": 1, "median_s": 0.30, "iqr_s": 0.01, "q1_s": 0.295,
         "q3_s": 0.305, "paper_mean_s": 0.33, "throughput_img_s": 3.33, "speedup": 4 / 3, "gflops": 30.5,
         "ideal_speedup": 1.15},
    ]
    (run / "timing.json").write_text(json.dumps({
        "config": {"protocol": "robust", "variants": ["deit", "tome:r=2", "tomato:sim=1e-07"], "runs": 10},
        "rows": timing_rows, "provenance": {**prov("2026-01-03T00:00:00+00:00"),
                                            "variants": ["deit", "tome:r=2", "tomato:sim=1e-07"]}}))
    return run


# --------------------------------------------------------------------------- paper constants
def test_paper_specs_are_canonical_and_numbers_consistent():
    for row in paper.TABLE1:
        assert parse(row["variant"]).spec == row["variant"]
    assert [r["variant"] for r in paper.TABLE1] == ["deit", "tome:r=2", "tomato:sim=1e-07"]
    deit, tome, tomato = (paper.TABLE1_BY_VARIANT[s] for s in ("deit", "tome:r=2", "tomato:sim=1e-07"))
    # The stated differences follow from Table 1 (latency: truncated to 2 decimals).
    assert round(tomato["top1"] - deit["top1"], 2) == paper.TOP1_VS_DEIT
    assert round(tomato["top1"] - tome["top1"], 2) == paper.TOP1_VS_TOME
    assert round(tomato["top5"] - deit["top5"], 2) == paper.TOP5_VS_DEIT
    assert round(tomato["top5"] - tome["top5"], 2) == paper.TOP5_VS_TOME
    assert math.trunc(10000 * (tomato["latency_s"] / deit["latency_s"] - 1)) / 100 == paper.LATENCY_VS_DEIT
    assert math.trunc(10000 * (tomato["latency_s"] / tome["latency_s"] - 1)) / 100 == paper.LATENCY_VS_TOME
    ids = [c["id"] for c in paper.FIGURES_AND_CLAIMS]
    assert len(ids) == len(set(ids)) == 9 + 11
    assert {"figure1", "figure2", "figure3", "token_cut_sim_1e-7", "tome_r2_token_cut"} <= set(ids)


# --------------------------------------------------------------------------- discovery
def test_recorded_runs_discovers_and_reads(run_dir: Path, tmp_path: Path):
    (tmp_path / "results" / "empty").mkdir()
    runs = book_runs.recorded_runs(tmp_path / "results")
    assert [r.name for r in runs] == ["sample_run"]
    run = runs[0]
    assert set(run.variants) == {"deit", "tome:r=2", "tomato:sim=1e-07"}
    assert run.planned == ["deit", "tome:r=2", "tomato:sim=1e-07"]
    assert run.sweep is None and not run.complete
    assert run.status.startswith("partial") and "no sweep.csv" in run.status
    assert run.pretrained is False
    rows = run.rows()
    assert list(rows.columns) == [*COLUMNS, "n_total", "complete"]
    assert list(rows["variant"]) == ["deit", "tome:r=2", "tomato:sim=1e-07"]
    r = rows.set_index("variant")
    assert r.loc["deit", "top1"] == pytest.approx(30.0)  # images 0-2
    assert r.loc["tomato:sim=1e-07", "top1"] == pytest.approx(40.0)  # + image 3
    assert r.loc["tomato:sim=1e-07", "tokens_mean"] == pytest.approx(172.0)
    assert r.loc["tome:r=2", "median_s"] == pytest.approx(0.32)
    assert bool(r.loc["deit", "complete"]) and r.loc["deit", "n_total"] == 10
    prov_ = run.provenance
    assert prov_["date_utc"] == "2026-01-01T00:00:00+00:00 … 2026-01-03T00:00:00+00:00"
    assert prov_["n_images"] == 10


def test_recorded_runs_absent_root_and_partial_variant(tmp_path: Path):
    assert book_runs.recorded_runs(tmp_path / "nope") == []
    run = tmp_path / "r"
    write_variant(run, "deit", BASE_TOP1[:4], [196] * 4, n_total=10)  # 4 of 10 done
    (run / "deit" / "summary.json").unlink()  # as during the first session of a run
    [rec] = book_runs.recorded_runs(tmp_path)
    rows = rec.rows()
    assert rows.loc[0, "n_images"] == 4 and not rows.loc[0, "complete"]
    assert rows.loc[0, "top1"] == pytest.approx(75.0)  # images 0-2 of 0-3
    assert math.isnan(rows.loc[0, "median_s"])


def test_sweep_csv_is_used_when_present(run_dir: Path):
    pd.DataFrame([{"variant": "deit", "top1": 1.5, "median_s": 0.5},
                  {"variant": "tomato:sim=1e-7", "top1": 2.5, "median_s": 0.25}],
                 columns=list(COLUMNS)).to_csv(run_dir / "sweep.csv", index=False)
    [run] = book_runs.recorded_runs(run_dir)
    assert run.sweep is not None and run.complete and run.status == "complete"
    rows = run.rows()
    assert list(rows["variant"]) == ["deit", "tomato:sim=1e-07"]  # canonical spec
    assert list(rows["top1"]) == [1.5, 2.5]


# --------------------------------------------------------------------------- measures
def test_prediction_agreement(run_dir: Path):
    agree = measures.prediction_agreement(run_dir).set_index("variant")
    assert agree.loc["deit", "top1_agreement"] == 100.0
    assert agree.loc["tome:r=2", "top1_agreement"] == pytest.approx(90.0)
    assert agree.loc["tomato:sim=1e-07", "top1_agreement"] == pytest.approx(80.0)
    # top-5 share 4 of 5 classes where top-1 changed (to a class outside the baseline's top-5)
    assert agree.loc["tomato:sim=1e-07", "top5_overlap"] == pytest.approx(100 * (8 + 2 * 0.8) / 10)
    assert (agree["n"] == 10).all()
    assert measures.prediction_agreement(run_dir, baseline="tome:r=8").empty


def test_baseline_diversity_reads_only_the_baselines_predictions(run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    [run] = book_runs.recorded_runs(run_dir)
    read: list[str] = []
    real = book_runs.read_predictions
    monkeypatch.setattr(book_runs, "read_predictions", lambda folder: read.append(Path(folder).name) or real(folder))
    assert book_runs.baseline_diversity(run)["n"] == 10
    assert read == ["deit"]  # a full-val run holds dozens of prediction files
    assert set(book_runs.predictions_of(run, only=["tome:r=2", "tomato:sim=1e-7"])) == {"tome:r=2", "tomato:sim=1e-07"}


def test_tokens_cut_range_and_tome_cut(run_dir: Path):
    lo, hi, mean = measures.tokens_cut_range(run_dir / "tomato_sim-1e-07" / "predictions.csv")
    assert lo == pytest.approx(100 * (1 - 186 / 196))
    assert hi == pytest.approx(100 * (1 - 155 / 196))
    assert mean == pytest.approx(100 * (1 - 172 / 196))
    final, per_block = measures.tome_token_cut(2)
    assert final == pytest.approx(100 * 24 / 196)
    assert per_block == pytest.approx(100 * 13 / 197)  # blocks keep 195, 193, ..., 173


def test_latency_changes_and_table1(run_dir: Path):
    [run] = book_runs.recorded_runs(run_dir)
    rows = run.rows()
    ch = measures.latency_changes(rows).set_index("variant")
    assert ch.loc["tomato:sim=1e-07", "vs_baseline_%"] == pytest.approx(-25.0)
    assert ch.loc["tomato:sim=1e-07", "vs_tome_r2_%"] == pytest.approx(100 * (0.30 / 0.32 - 1))
    t = claims.table1(rows, measures.prediction_agreement(run))
    assert list(t.columns) == [
        "Model", "variant", "paper top-1", "ours top-1", "paper top-5", "ours top-5", "paper latency s",
        "ours median latency s", "paper latency vs DeiT-B %", "ours vs baseline %", "ours tokens kept",
        "ours top-1 agreement with baseline %"]
    t = t.set_index("variant")
    assert t.loc["tomato:sim=1e-07", "paper top-1"] == 80.14
    assert t.loc["tomato:sim=1e-07", "ours top-1"] == pytest.approx(40.0)
    assert t.loc["tomato:sim=1e-07", "paper latency vs DeiT-B %"] == pytest.approx(-22.196, abs=1e-3)
    assert t.loc["tome:r=2", "ours vs baseline %"] == pytest.approx(-20.0)
    assert t.loc["tomato:sim=1e-07", "ours top-1 agreement with baseline %"] == pytest.approx(80.0)
    assert t.loc["tome:r=2", "ours tokens kept"] == 194
    # a variant the paper lacks is appended with empty paper columns; missing ones are NaN
    extra = pd.concat([rows, pd.DataFrame([{"variant": "tomato:keep=0.85", "top1": 1.0}])])
    t2 = claims.table1(extra).set_index("variant")
    assert t2.loc["tomato:keep_ratio=0.85", "Model"] == "ToMato keep=0.85"
    assert math.isnan(t2.loc["tomato:keep_ratio=0.85", "paper top-1"])
    assert math.isnan(claims.table1(rows.iloc[:1]).set_index("variant").loc["tome:r=2", "ours top-1"])


def test_provenance_table_and_overview(run_dir: Path):
    t = tables.provenance_table(prov()).set_index("field")["value"]
    assert t["model"] == "deit_base_patch16_224"
    assert t["weights sha256"] == "abababababab…"
    assert t["CPU"] == "Test CPU (2 cores, torch threads 2)"
    assert t["commit"] == "0123456789 (dirty)"
    assert t["Jetson board"] == "absent (not a Jetson)"
    assert t["trained weights"] == "no: random-init"
    ours = {**prov(), "pretrained": True, "weights_source": "checkpoint:/a/data/weights/deit-x/model.safetensors"}
    shown = tables.provenance_table({**ours, "data": "/a/shared/imagenette/val"}).set_index("field")["value"]
    assert shown["trained weights"] == "yes, trained here"
    # No path of the machine that recorded it: the project's names.
    assert shown["weights source"].startswith("data/weights/deit-x") and shown["data"] == "imagenette/val"
    assert "/a/" not in tables.provenance_table({**ours, "data": "/a/shared/imagenette/val"}).to_string()
    ov = tables.runs_overview(book_runs.recorded_runs(run_dir.parent))
    assert ov.loc[0, "run"] == "sample_run"
    assert ov.loc[0, "variants"] == "deit, tome:r=2, tomato:sim=1e-07"
    assert ov.loc[0, "machine"] == "Test CPU (2 cores); GPU: none (CUDA not available)"


def test_reproduction_summary_random_weights(run_dir: Path):
    [run] = book_runs.recorded_runs(run_dir)
    s = claims.reproduction_summary(run)
    assert len(s) == len(paper.FIGURES_AND_CLAIMS)
    by = dict(zip(s["Item"], s.to_dict("records")))
    top1 = by["Table 1, DeiT-B: top-1"]
    assert top1["Ours"] == "30.00 %" and top1["Status"] == "needs pretrained weights"
    assert by["Table 1, ToMato-B (sim=1e-7): top-1"]["Ours"] == "40.00 % (same top-1 as the baseline on 80.0 %)"
    lat = by["Table 1, ToMe-B (r=2): latency"]
    assert lat["Ours"] == "0.3200 s (median, batch 1)" and lat["Status"] == "needs a Jetson"
    assert lat["Reason"] == "measured on Test CPU (2 cores), not a Jetson Nano; absolute seconds depend on the device"
    assert by["Latency of ToMato-B vs DeiT-B"]["Ours"].startswith("-25.00 %")
    assert by["Latency of ToMato-B vs DeiT-B"]["Status"].startswith("pipeline reproduced, number not comparable")
    assert by["Top-1 of ToMato-B vs DeiT-B"]["Ours"] == "+10.00 pt"
    cut = by["Tokens cut per image by ToMato sim=1e-7"]
    assert cut["Ours"].startswith("5.10–20.92 %")
    assert by["Figure 1: ToMe merges in every block, ToMato once in block 0"]["Status"] == "reproduced"
    assert by["Tokens merged by ToMe r=2"]["Ours"].startswith("12.24 %")
    assert by["Figure 3: top-1 vs latency, ToMe sweeping r, ToMato sweeping sim"]["Ours"].startswith(
        "1 ToMe and 1 ToMato points")


def test_a_level_of_another_model_is_not_judged_against_deit_b():
    def ev(model: str, data: str, mini: bool) -> claims.Evidence:
        return claims.Evidence(run=None, tradeoff=None, by={}, agree={}, changes={}, pretrained=True, jetson=False,
                               machine="m", data=data, mini=mini, model=model)

    tiny = ev("deit_tiny_distilled_patch16_224", "/x/shared/imagenette/val", False)
    assert tiny.accuracy(66.7, 80.96, 0.5) == ("other model or data",
                                               "DeiT-Ti (distilled), pretrained weights, on imagenette/val")
    # a difference is compared with the paper's, and says whose it is
    assert tiny.accuracy(-0.6, -0.82, 0.5, level=False)[0] == "close, other model"
    assert tiny.accuracy(+0.25, -0.82, 0.5, level=False)[0] == "differs, other model"
    base = ev("deit_base_patch16_224", "/data/imagenet-mini/val", True)
    assert base.accuracy(80.9, 80.96, 0.5)[0] == "reproduced"
    assert ev("deit_base_patch16_224", "/data/other", False).accuracy(80.9, 80.96, 0.5)[0] == "other model or data"


def test_reproduction_summary_without_runs():
    s = claims.reproduction_summary(None)
    assert len(s) == len(paper.FIGURES_AND_CLAIMS)
    assert (s.loc[s["Item"].str.startswith("Table 1"), "Status"] == "not run").all()
    # weight-independent items still have a value
    assert s.set_index("Item").loc["Tokens merged by ToMe r=2", "Status"] == "differs"


def test_plots_draw(run_dir: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    [run] = book_runs.recorded_runs(run_dir)
    rows = run.rows().merge(measures.prediction_agreement(run), on="variant")
    timing = pd.DataFrame(run.timing)
    ax = figures.plot_latency(timing, pretrained=False)
    assert "random-init" in ax.get_title() and "NOT accuracy" not in ax.get_title()
    assert len(ax.patches) == 3
    figures.plot_speedup(timing)
    ax = figures.plot_tradeoff(rows, pretrained=False)
    assert "NOT accuracy" in ax.get_title()
    ax = figures.plot_tradeoff(rows, y="top1_agreement", pretrained=False)
    assert "NOT accuracy" not in ax.get_title() and "random-init" in ax.get_title()
    assert "random-init" not in figures.plot_latency(timing, pretrained=True).get_title()
    ax = figures.plot_agreement(measures.prediction_agreement(run))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ToMe r=2 (n=10)", "ToMato sim=1e-7 (n=10)"]
    assert [round(p.get_width(), 6) for p in ax.patches[:2]] == [10.0, 20.0]  # top-1 changed
    fig = figures.plot_tradeoff_panels(rows, pretrained=False)
    assert len(fig.axes) == 4
    figures.plot_throughput(timing.assign(batch_size=[1, 1, 1]))
    plt.close("all")


def test_repo_path_and_banner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "_toc.yml").write_text("root: x\n")
    (tmp_path / "tomato").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert book_runs.repo_root() == tmp_path.resolve()
    assert book_runs.repo_path("data/results") == tmp_path.resolve() / "data" / "results"
    from tomato.harness.models import WeightsInfo

    text = notes.weights_banner(WeightsInfo("m", "random-init:seed=0", False, "0" * 64))
    assert "random-init" in text and "meaningless" in text
    assert notes.weights_note(True) == "" and "NOT accuracy" in notes.weights_note(False)
    from tomato.harness.models import WEIGHTS_DIR

    ours = WeightsInfo("deit_tiny", f"checkpoint:{WEIGHTS_DIR / 'deit-tiny-imagenette' / 'model.safetensors'}",
                       True, "ab" * 32)
    text = notes.weights_banner(ours)  # the model trained here, named so, without the checkout's path
    assert "**trained here**" in text and "`data/weights/deit-tiny-imagenette`" in text and str(WEIGHTS_DIR) not in text
    other = notes.weights_banner(WeightsInfo("deit_base", "checkpoint:/elsewhere/deit_base.pth", True, "ab" * 32))
    assert "trained here" not in other and "/elsewhere/deit_base.pth" in other
    # A record made in another checkout: named by its weights folder, not the machine's paths.
    prov = {"model": "deit_tiny", "weights_source": "checkpoint:/other/main/data/weights/deit-tiny-x/model.safetensors",
            "weights_sha256": "cd" * 32, "data": "/other/shared/imagenette/val"}
    line = notes.recorded_weights(prov, 3925)
    assert "trained here (`data/weights/deit-tiny-x`" in line and "3,925 photos of `imagenette/val`" in line
    assert "/other" not in line
    assert "trained here" not in notes.recorded_weights({**prov, "weights_source": "checkpoint:/x/data/weights.pth"})


def test_run_folder_pick_and_ratios(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tomato.harness.models import WeightsInfo

    w = WeightsInfo("deit_base_patch16_224", "random-init:seed=0", False, "0123456789" * 6 + "abcd")
    assert book_runs.run_folder(tmp_path, "accuracy", w, "smoke") == tmp_path / "accuracy_deit_base_patch16_224_smoke_01234567"
    assert book_runs.run_folder(tmp_path, "tradeoff", w, "/data/imagenet-mini/val").name == \
        "tradeoff_deit_base_patch16_224_imagenet-mini-val_01234567"
    # a run without ToMato cannot stand for Table 1; the one with all three can
    other = tmp_path / "results" / "other"
    write_variant(other, "deit", BASE_TOP1, [196] * 10)
    runs = book_runs.recorded_runs(tmp_path / "results")
    assert [r.name for r in runs] == ["other", "sample_run"]
    assert book_runs.pick_table1_run(runs).name == "sample_run"
    assert book_runs.pick_table1_run(runs[:1]) is None
    ratios = pd.DataFrame({"comparison": ["ToMato-B vs DeiT-B"], "ours %": [-25.0], "paper %": [float("nan")]})
    html = tables.styled(ratios, caption="Ratios").to_html()
    assert "Ratios" in html and "-25.00" in html and "–" in html  # NaN shown as a dash


def test_save_timing_round_trip(tmp_path: Path):
    rows = [{"variant": "deit", "batch_size": 1, "median_s": 0.5}]
    config = {"protocol": "robust", "variants": ["deit"], "runs": 3}
    path = speed.save_timing(tmp_path / "t" / "timing.json", rows, config)
    stored = json.loads(path.read_text())
    assert stored["rows"] == rows and stored["config"] == config
    assert stored["provenance"]["runs"] == 3 and "torch" in stored["provenance"]


def test_timing_noise():
    clean = pd.DataFrame({"median_s": [1.0, 0.8], "iqr_s": [0.05, 0.1]})
    assert notes.timing_noise(clean) == ""
    noisy = pd.DataFrame({"median_s": [1.0, 0.8], "iqr_s": [0.05, 0.4]})
    assert "reaches 50% of the median" in notes.timing_noise(noisy)
    assert "not reliable" in notes.timing_noise(noisy)
    with_ci = notes.timing_noise(noisy.assign(speedup_low=0.9, speedup_high=1.1))
    assert "Spread of single rounds" in with_ci and "interval excludes 1" in with_ci and "not reliable" not in with_ci
    assert notes.timing_noise(pd.DataFrame({"median_s": [1.0]})) == ""


def test_eval_gflops(run_dir: Path):
    from tomato.harness import flops

    [run] = book_runs.recorded_runs(run_dir)
    g = measures.eval_gflops(run)
    d = flops.DEIT_B
    assert g["deit"] == pytest.approx(35.127656, rel=1e-6)  # 2 x 17.56 GMACs
    assert g["tome:r=2"] == pytest.approx(flops.vit_flops(d, flops.tokens_schedule_tome(d, 2)) / 1e9)
    kept = [186, 155, 176, 170, 180, 160, 175, 165, 185, 168]
    per_image = [flops.vit_flops(d, flops.tokens_schedule_tomato(d, k), extra=flops.tomato_merge_flops(d)) / 1e9
                 for k in kept]
    assert g["tomato:sim=1e-07"] == pytest.approx(sum(per_image) / len(per_image))
    rows = measures.add_eval_gflops(run.rows(), run)
    assert rows.set_index("variant").loc["deit", "ideal_speedup_eval"] == pytest.approx(1.0)
    assert rows.set_index("variant").loc["tome:r=2", "ideal_speedup_eval"] == pytest.approx(g["deit"] / g["tome:r=2"])


def test_display_names_and_views(run_dir: Path):
    names = {s: variants.label(s) for s in (
        "deit", "tome:r=2", "tomato:sim=1e-7", "tomato:keep=0.85", "tomato:sim=1e-7,method=parallel",
        "tomato:tokens=150", "tomato:sim=0.001")}
    assert names == {"deit": "baseline", "tome:r=2": "ToMe r=2", "tomato:sim=1e-7": "ToMato sim=1e-7",
                     "tomato:keep=0.85": "ToMato keep=0.85",
                     "tomato:sim=1e-7,method=parallel": "ToMato parallel sim=1e-7",
                     "tomato:tokens=150": "ToMato tokens=150", "tomato:sim=0.001": "ToMato sim=0.001"}
    [run] = book_runs.recorded_runs(run_dir)
    acc, lat = claims.table1_views(claims.table1(run.rows(), measures.prediction_agreement(run)))
    assert list(acc.columns)[:3] == ["Model", "paper top-1", "ours top-1"]
    assert list(lat.columns)[-1] == "ours tokens kept"
    rows = measures.add_eval_gflops(run.rows().merge(measures.prediction_agreement(run), on="variant"), run)
    sv = tables.sweep_view(rows).set_index("variant")
    assert sv.loc["ToMato sim=1e-7", "tokens (min–max)"] == "172.0 (155–186)"
    assert sv.loc["ToMato sim=1e-7", "same top-1 %"] == pytest.approx(80.0)
    assert sv.loc["baseline", "ideal ×"] == pytest.approx(1.0)
    assert "timed tokens" in sv and list(sv.columns).index("timed tokens") == list(sv.columns).index("speed-up ×") + 1
    html = tables.styled(sv.reset_index(), widths={"variant": "30%"}).to_html()
    assert "table-layout: fixed" in html and "width: max(30%, " in html


def test_explain_differences(run_dir: Path):
    from tomato.harness.models import WeightsInfo

    [run] = book_runs.recorded_runs(run_dir)
    w = WeightsInfo("deit_base_patch16_224", "random-init:seed=0", False, "0" * 64)
    text = claims.explain_differences(run, weights=w, data="smoke", device="cpu")
    assert text.startswith("1. **Weights.**") and "5. **Software.**" in text
    assert "ToMato sim=1e-7 keeps the baseline's top-1 on 80.0% of the 10 images" in text
    assert "sample_run: 5.1–20.9% (mean 12.2%) over 10 images" in text
    assert "24 of 196 (12.2%)" in text
    pretrained = WeightsInfo("deit_base_patch16_224", "checkpoint:/x.pth", True, "0" * 64)
    assert "**Weights.**" not in claims.explain_differences(run, weights=pretrained, data="/d", device="cpu")
    listed = claims.explain_differences(run, weights=w, data="smoke", device="cpu", others=[run])
    assert "**The recorded runs** below have their own model, weights and data: `sample_run`: random-init " \
           "DeiT-B, 10 photos of `sample/val`." in listed


def test_variants_name_and_order_in_one_place():
    specs = ["tomato:keep=0.5", "tomato:sim=1e-20", "bogus", "deit", "tome:r=8", "tomato:sim=1e-2", "tome:r=1",
             "tomato:sim=1e-7,method=parallel", "tomato:sim=1e-7", "tomato:keep=0.9", "tomato:tokens=100"]
    assert variants.order(specs) == [
        "deit", "tome:r=1", "tome:r=8", "tomato:sim=1e-2", "tomato:sim=1e-7", "tomato:sim=1e-20",
        "tomato:sim=1e-7,method=parallel", "tomato:keep=0.9", "tomato:keep=0.5", "tomato:tokens=100", "bogus"]
    short = {s: parse(s).short for s in ("deit", "tome:r=2", "tomato:sim=1e-7", "tomato:sim=5e-4",
                                         "tomato:sim=2.5e-3", "tomato:keep=0.85")}
    assert short == {"deit": "baseline", "tome:r=2": "r=2", "tomato:sim=1e-7": "1e-7", "tomato:sim=5e-4": "5e-4",
                     "tomato:sim=2.5e-3": "2.5e-3", "tomato:keep=0.85": "keep=0.85"}
    families = [parse(s).family for s in ("deit", "tome:r=2", "tomato:sim=1e-7", "tomato:sim=1e-7,method=parallel",
                                          "tomato:keep=0.5", "tomato:tokens=9")]
    assert families == ["deit", "tome", "tomato", "parallel", "keep", "tokens"]
    assert parse("tomato:keep=0.5").parameter == ("keep_ratio", 0.5) and parse("deit").parameter == ("", "")
    assert variants.label("bogus") == "bogus" and variants.canonical("tomato:sim=1e-7") == "tomato:sim=1e-07"


def test_verdict_is_written_from_the_records(run_dir: Path):
    from tomato.book import verdict

    (run_dir.parent / "agreement_x.json").write_text(json.dumps({"rows": [
        {"index": 0, "setting": "sim=1e-07", "same_directed": True, "ari_either": 1.0},
        {"index": 1, "setting": "sim=1e-07", "same_directed": False, "ari_either": 0.9}], "provenance": {}}))
    text = verdict.verdict_markdown(run_dir.parent)
    assert text.startswith("## Verdict of this build")
    assert "removed 5.1–20.9% of the patch tokens per photo (mean 12.2%, 10 photos of `sample_run`)" in text
    assert "in 1 of 2 cases (2 photos × sim=1e-07; `agreement_x.json`)" in text
    assert "kept the unpatched model's top-1 on 80.0% of the 10 photos" in text
    # agreement is not called valid: it is cheap when the baseline is degenerate (no fidelity record here to point to)
    assert ("(a perturbation measure, which means something with any weights but is cheap when the baseline's "
            "predictions are degenerate).") in text and "valid with any weights" not in text
    assert "ToMato sim=1e-7 ×1.33" in text  # speed-up from timing.json
    # FLOPs as the run recorded them, with its own model's size, named from its provenance
    assert "30.50 GFLOPs per image for ToMato sim=1e-7 against 35.10 for DeiT-B (-13.1%)" in text
    from types import SimpleNamespace

    assert verdict._model(SimpleNamespace(provenance={"model": "deit_tiny_distilled_patch16_224"})) == \
        "DeiT-Ti (distilled)"
    assert verdict.ACCURACY_COMMAND in text and verdict.JETSON_COMMAND in text  # random weights, not a Jetson


def test_verdict_reads_fidelity_and_dispatch_records(tmp_path: Path):
    from tomato.book import verdict

    (tmp_path / "fidelity_x.json").write_text(json.dumps({
        "baseline": {"n": 10, "distinct": 2, "entropy_bits": 0.5, "max_entropy_bits": 3.32, "top_share": 0.9,
                     "degenerate": True},
        "summary": [{"setting": "sim=1e-07", "variant": "tomato", "tokens_mean": 150.0, "kl_mean": 0.001},
                    {"setting": "sim=1e-07", "variant": "random_groups", "tokens_mean": 150.0, "kl_mean": 0.03}],
        "provenance": {}}))
    (tmp_path / "bench_x.json").write_text(json.dumps({"rows": [
        {"name": "merge step: parallel, sim=1e-7", "batch": 1, "ops": 102, "syncs": 1},
        {"name": "merge step: parallel, sim=1e-7", "batch": 8, "ops": 999, "syncs": 9}], "provenance": {}}))
    text = verdict.verdict_markdown(tmp_path)
    assert "predicts 2 distinct classes over 10 photos" in text and "**degenerate**" in text
    assert "ToMato 0.001 nats against random groups of the same sizes 0.03" in text
    assert "parallel, sim=1e-7: 102 ops, 1 host sync (" in text and "999" not in text
    assert "ToMato moves the output 30× less than random groups of the same sizes." in text
    # several settings: one line of KLs each, one reading across them
    rec = json.loads((tmp_path / "fidelity_x.json").read_text())
    rec["summary"] += [{"setting": "keep_ratio=0.5", "variant": "tomato", "tokens_mean": 98.0, "kl_mean": 0.05},
                       {"setting": "keep_ratio=0.5", "variant": "random_groups", "tokens_mean": 98.0, "kl_mean": 0.2}]
    (tmp_path / "fidelity_x.json").write_text(json.dumps(rec))
    text = verdict.verdict_markdown(tmp_path)
    assert text.count("Output drift") == 1
    assert "sim=1e-07 (150 tokens): ToMato 0.001, random groups of the same sizes 0.03; keep_ratio=0.5 (98" in text
    assert "Across the 2 settings ToMato moves the output 4–30× less than random groups of the same sizes." in text


def test_verdict_opens_with_a_plain_answer(run_dir: Path):
    from tomato.book import verdict

    results = run_dir.parent
    (results / "fidelity_x.json").write_text(json.dumps({
        "baseline": {"n": 10, "distinct": 9, "entropy_bits": 3.1, "max_entropy_bits": 3.32, "top_share": 0.2,
                     "degenerate": False},
        "summary": [{"setting": "sim=1e-07", "variant": v, "tokens_mean": 150.0, "kl_mean": kl, "tome_r": r}
                    for v, kl, r in (("tomato", 0.001, None), ("random_groups", 0.03, None), ("tome", 0.001, 3))],
        "provenance": {}}))
    (results / "robust_gpu.json").write_text(json.dumps({
        "config": {"protocol": "robust", "device": "cuda"},
        "provenance": {"gpu_name": "Test GPU", "git": {"commit": "abcdef123456"}},
        "rows": [{"variant": "tomato:sim=1e-7", "batch_size": 1, "speedup": 0.5, "speedup_low": 0.45,
                  "speedup_high": 0.55}]}))
    text = verdict.verdict_markdown(results)
    short = text.split("\n")[2]
    assert short.startswith("**In short.**") and "random-init, not trained" in short
    assert "Test GPU, random-init DeiT-B (`robust_gpu.json`, code at abcdef1): ×0.50 (0.45–0.55), slower" in short
    assert "ToMato sim=1e-7 ×1.33" not in short and "×1.33 (no interval recorded)" in short
    assert "about as much as ToMe and 30× less than random groups of its sizes" in short
    assert "ToMe r=3 (its mean tokens per block closest to ToMato's) 0.001" in text
    assert verdict.FIDELITY_COMMAND in text
    # The record decides the words: a faster GPU run reads "faster".
    (results / "robust_gpu.json").write_text((results / "robust_gpu.json").read_text().replace("0.55", "1.9")
                                             .replace("0.45", "1.2").replace('"speedup": 0.5', '"speedup": 1.5'))
    assert "×1.50 (1.20–1.90), faster" in verdict.verdict_markdown(results)


def test_machine_short_names_the_kind_once():
    gpu = {"device": "cuda", "gpu_name": "Test GPU", "machine": {}}
    assert tables.machine_short(gpu) == "Test GPU"
    assert tables.machine_short({**gpu, "gpu_name": "NVIDIA H100 80GB HBM3"}) == "NVIDIA H100 80GB HBM3 GPU"
    cpu = {"device": "cpu", "cpu_model": "AMD EPYC", "machine": {"cpu_count": 2}}
    assert tables.machine_short(cpu) == "AMD EPYC CPU (2 cores)"


def test_verdict_names_the_records_that_counted_differently(tmp_path: Path):
    from tomato.book import verdict

    def bench(name: str, ops: int, device: str) -> None:
        (tmp_path / name).write_text(json.dumps({
            "provenance": {"device": device, "gpu_name": "Test H100", "cpu_model": "EPYC", "machine": {}},
            "rows": [{"name": "merge step: parallel, tokens=138", "batch": 1, "ops": ops, "syncs": 1,
                      "median_ms": 1.0, "ratio": 0.1, "device": device},
                     {"name": "forward: unpatched", "batch": 1, "median_ms": 10.0, "ratio": 1.0, "device": device}]}))

    bench("bench_a.json", 348, "cpu")
    bench("bench_b.json", 349, "cuda")
    text = verdict.verdict_markdown(tmp_path)
    assert "the same in 1 of 2 records) parallel, tokens=138: 348 ops, 1 host sync (`bench_a.json`); " \
           "differing: parallel, tokens=138: 349 ops, 1 host sync on Test H100 GPU." in text
    bench("bench_b.json", 348, "cuda")
    assert "differing" not in verdict.verdict_markdown(tmp_path)


# --------------------------------------------------------------------------- what pages call
def test_reproduction_sources_lend_this_builds_timing_only_when_needed(run_dir: Path, tmp_path: Path):
    [timed] = book_runs.recorded_runs(run_dir)
    chosen = claims.reproduction_sources([timed], [], [])
    assert (chosen.table, chosen.tradeoff, chosen.timing_rows, chosen.used) == (timed, timed, None, [timed])
    assert "latencies from" not in chosen.sentence() and "`sample_run`" in chosen.sentence()
    assert claims.reproduction_sources([timed], [timed], []).timing_rows is None  # timed: lends none
    untimed_dir = tmp_path / "results" / "untimed"
    for spec in ("deit", "tome:r=2", "tomato:sim=1e-7"):
        write_variant(untimed_dir, spec, BASE_TOP1, [196] * 10)
    [untimed] = book_runs.recorded_runs(untimed_dir)
    chosen = claims.reproduction_sources([untimed], [timed], [])
    assert chosen.table is untimed and chosen.timing_rows is not None and chosen.used == [untimed, timed]
    assert "latencies from **`sample_run`**" in chosen.sentence()
    assert claims.reproduction_sources([untimed], [], [timed]).tradeoff is timed
    # a run of trained weights draws Figure 3 itself: its top-1 axis is accuracy, this build's is not
    for v in untimed.variants.values():
        v.config["pretrained"] = True
    assert claims.reproduction_sources([untimed], [], [timed]).tradeoff is untimed
    assert claims.reproduction_sources([], [], [timed]) is None


def test_same_tokens_and_sweep_rows(run_dir: Path):
    tokens = [186, 155, 176, 170, 180, 160, 175, 165, 185, 168]
    tokens[0] = 185  # the parallel visit differs on one photo
    tomato = list(BASE_TOP1)
    tomato[3], tomato[4] = 0, 1
    write_variant(run_dir, "tomato:sim=1e-7,method=parallel", tomato, tokens)
    [run] = book_runs.recorded_runs(run_dir)
    assert measures.same_tokens(run) == {"run": "sample_run", "images": 10, "same token count": 9,
                                         "same top-1": 10}
    assert measures.same_tokens(run, b="tomato:keep=0.5") is None
    from tomato.harness import flops

    rows = measures.sweep_rows(run, flops.DEIT_B, "deit_base_patch16_224")
    assert "top1_agreement" in rows and rows["gflops_eval"].notna().all()
    assert "gflops_eval" not in measures.sweep_rows(run, flops.DEIT_B, "vit_small_patch16_224")


def test_run_notes_say_how_it_was_timed_and_weigh_the_baseline(run_dir: Path):
    [run] = book_runs.recorded_runs(run_dir)
    text = notes.run_notes(run)
    assert text.startswith("Robust protocol (ours)") and "**Baseline predictions:**" in text
    assert "Noisy timing" not in text
    noisy = run.rows().assign(iqr_s=run.rows()["median_s"])
    assert "Noisy timing" in notes.run_notes(run, noisy)


def test_a_page_finds_its_own_runs(run_dir: Path, tmp_path: Path):
    from tomato.book.notebook import Page
    from tomato.harness.models import WeightsInfo

    w = WeightsInfo("deit_base_patch16_224", "random-init:seed=0", False, "ab" * 32)
    params = {"results": str(run_dir.parent), "runs": str(tmp_path / "mine"), "data": "smoke"}
    page = Page(params, model=None, weights=w, samples=[], who="random-init DeiT-B")
    assert page.run_folder("accuracy") == book_runs.run_folder(tmp_path / "mine", "accuracy", w, "smoke")
    assert page.run_folder("x", data="other").name.endswith("_other_abababab")
    assert [r.name for r in page.recorded_runs()] == ["sample_run"]
    assert [p.name for p, _ in page.records("timing")] == []  # a run's timing.json is inside its folder
    assert page.record("timing", run_dir / "timing.json")["config"]["protocol"] == "robust"
    assert page.recorded_variant("tome:r=2").config["variant"] == "tome:r=2"


def test_sim_for_cut_and_cut_lines(run_dir: Path):
    [run] = book_runs.recorded_runs(run_dir)
    sim, cut, n = measures.sim_for_cut([run], 14.5)
    assert (sim, n) == (1e-7, 10) and cut == pytest.approx(measures.tokens_cut_range(run.predictions("tomato:sim=1e-07"))[2])
    assert measures.sim_for_cut([run], 14.5, weights_sha256="cd" * 32) is None  # other weights
    assert paper.TOKEN_CUT_MIDDLE == pytest.approx((8.16 + 20.92) / 2)
    import torch

    text = measures.cut_lines([1e-7], torch.tensor([[5.0, 15.0]]), (1e-15, 14.2, 3925))
    assert "5.0–15.0% of the patch tokens removed on these photos (mean 10.0%)" in text
    assert "Over 3,925 recorded photos, sim=1e-15 removes 14.2%" in text
    summary = measures.cut_summary({"live": np.array([5.0, 10.0, 25.0])})
    assert summary.loc["live", "within paper range (%)"] == pytest.approx(100 / 3)


def test_photos_per_class_takes_the_first_readable_of_each_class(tmp_path: Path, vit):
    from tomato.book.notebook import Page
    from tomato.harness import data
    from tomato.harness.models import WeightsInfo

    root = tmp_path / "val"
    smoke = data.smoke_samples()
    for s in smoke[:3] + smoke[:1]:  # the first class twice
        (root / s.wnid).mkdir(parents=True, exist_ok=True)
        data.load_image(s.path).resize((64, 48)).save(root / s.wnid / f"{s.path.stem}_{len(list((root / s.wnid).iterdir()))}.JPEG")
    (root / smoke[0].wnid / "0_broken.JPEG").write_bytes(b"not a jpeg")  # sorts first in its class
    page = Page({"device": "cpu"}, vit(), WeightsInfo("deit_tiny", "random-init:seed=0", False, "0" * 64), [], "x")
    images, photos, names = page.photos_per_class(str(root))
    wnids = sorted({s.wnid for s in smoke[:3]})
    assert images.shape == (len(wnids), 3, 224, 224) and len(photos) == len(names) == len(wnids)
    assert names == [data.class_name(data.wnid_index(w)).split(",")[0] for w in wnids]
    assert [Path(p).name for p, _ in page.skipped] == ["0_broken.JPEG"]  # skipped, and named
    assert page.photos_per_class(str(tmp_path / "absent")) is None


def test_tome_reach_says_where_tomes_r_stops(run_dir: Path):
    from tomato.book import miniature

    [run] = book_runs.recorded_runs(run_dir)
    text = miniature.tome_reach(run)
    # 197 tokens: r=2 leaves 197 - 12 * 2 = 173; r=15 leaves 32 to the last block, which may merge (32 - 1) // 2 = 15
    assert text.startswith("ToMe's sweep goes to r=2. At r=2 a block keeps ")
    assert "of the 197 tokens on average over the 12 blocks" in text
    assert "only 173 tokens are left after the last block" in text and "only up to r=15;" in text


def test_token_cut_figure_has_one_curve_and_sentence_per_fixed_sim(run_dir: Path):
    import matplotlib.pyplot as plt

    from tomato.book import miniature

    [run] = book_runs.recorded_runs(run_dir)
    df = pd.DataFrame({"variant": ["deit", "tome:r=2", "tomato:sim=1e-07", "tomato:keep=0.5"],
                       "label": ["base", "ToMe", "ToMato", "budget"]})  # a budget has no fixed sim: not drawn
    fig, sentences = miniature.plot_token_cuts(run, df)
    # the fixture's ToMato keeps 155 to 186 of 196 patches
    assert sentences == [miniature.cut_sentence(miniature.token_cuts(run, "tomato:sim=1e-07"), "ToMato")]
    assert sentences[0].startswith(f"ToMato: per-photo token cut {100 * (1 - 186 / 196):.1f}% to")
    assert fig.axes[0].get_legend_handles_labels()[1] == ["ToMato", "paper: 8.16–20.92%"]
    plt.close(fig)


def test_batch_timing_of_the_same_weights_joins_table_1(run_dir: Path, tmp_path: Path):
    from tomato.book import miniature
    from tomato.harness import records

    [run] = book_runs.recorded_runs(run_dir)
    results = run_dir.parent
    rows = [{"variant": v, "batch_size": 8, "median_s": m, "speedup": s, "speedup_low": s - 0.1,
             "speedup_high": s + 0.1} for v, m, s in (("deit", 0.4, 1.0), ("tomato:sim=1e-07", 0.3, 1.3))]
    config = {"protocol": "robust", "weights_sha256": "ab" * 32, "batch_sizes": [8]}
    records.write("timing", results / "b8.json", {"config": config, "rows": rows, "provenance": prov()})
    records.write("timing", results / "other.json", {"config": {**config, "weights_sha256": "cd" * 32},
                                                      "rows": rows, "provenance": prov("2026-02-01T00:00:00+00:00")})
    path, found = miniature.batch_timing(results, run)
    assert path.name == "b8.json"  # not the other weights' record, though newer
    df = miniature.with_batch(miniature.table(run), found)
    assert df.set_index("variant").loc["tomato:sim=1e-07", "speedup_b8"] == pytest.approx(1.3)
    assert math.isnan(df.set_index("variant").loc["tome:r=2", "speedup_b8"])  # not timed at batch 8
    assert miniature.view(df)["speed-up b8 [95% CI]"].iloc[0] == "1.000 [0.900, 1.100]"
    assert miniature.batch_timing(results, run, batch=32) is None


def test_one_variant_timed_twice_with_the_same_weights_is_read_side_by_side(run_dir: Path, tmp_path: Path):
    import shutil

    shutil.copytree(run_dir, run_dir.parent / "again")
    timing = json.loads((run_dir / "timing.json").read_text())
    for r in timing["rows"]:
        r.update(speedup_low=r["speedup"] * 0.95, speedup_high=r["speedup"] * 1.05)
    (run_dir / "timing.json").write_text(json.dumps(timing))
    for r in timing["rows"]:
        fast = r["speedup"] * 1.5
        r.update(speedup=fast, speedup_low=fast * 0.95, speedup_high=fast * 1.05)
    (run_dir.parent / "again" / "timing.json").write_text(json.dumps(timing))
    runs = book_runs.recorded_runs(run_dir.parent)
    text = measures.repeat_timings(runs)
    assert text.startswith("ToMato sim=1e-7 was timed 2 times with the same weights (sha256 `abababab…`)")
    assert "×1.33 (1.27–1.40, `sample_run`)" in text and "×2.00 (1.90–2.10, `again`)" in text
    assert "do not all overlap" in text
    assert measures.repeat_timings(runs[:1]) == ""
