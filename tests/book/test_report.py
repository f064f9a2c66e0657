"""tomato.book (runs, tables, figures) and tomato.book.paper on small hand-made result folders (no model needed)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomato.book import latency, paper, tables
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
    # The stated latency differences follow from Table 1 (truncated to 2 decimals).
    assert math.trunc(10000 * (tomato["latency_s"] / deit["latency_s"] - 1)) / 100 == paper.LATENCY_VS_DEIT
    assert math.trunc(10000 * (tomato["latency_s"] / tome["latency_s"] - 1)) / 100 == paper.LATENCY_VS_TOME


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
def test_tokens_cut_range(run_dir: Path):
    lo, hi, mean = paper.tokens_cut_range(run_dir / "tomato_sim-1e-07" / "predictions.csv")
    assert lo == pytest.approx(100 * (1 - 186 / 196))
    assert hi == pytest.approx(100 * (1 - 155 / 196))
    assert mean == pytest.approx(100 * (1 - 172 / 196))


def test_provenance_table():
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
    # Two records in one table: a column each, a field one lacks shown as "–".
    both = tables.provenance_side_by_side({"a": prov(), "b": {**ours, "batch_size": 7}}).set_index("field")
    assert list(both.columns) == ["a", "b"] and both.loc["batch size", "b"] == 7 and both.loc["batch size", "a"] == "–"
    assert both.loc["trained weights", "a"] == "no: random-init" and both.loc["trained weights", "b"] == "yes, trained here"
    assert "/a/" not in tables.provenance_table({**ours, "data": "/a/shared/imagenette/val"}).to_string()


def test_plots_draw(run_dir: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    [run] = book_runs.recorded_runs(run_dir)
    timing = pd.DataFrame(run.timing)
    ax = latency.plot_latency(timing, pretrained=False)
    assert "random-init" in ax.get_title() and "NOT accuracy" not in ax.get_title()
    assert len(ax.patches) == 3
    assert "random-init" not in latency.plot_latency(timing, pretrained=True).get_title()
    plt.close("all")


def test_repo_path_and_banner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "_toc.yml").write_text("root: x\n")
    (tmp_path / "tomato").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert book_runs.repo_root() == tmp_path.resolve()
    assert book_runs.repo_path("data/results") == tmp_path.resolve() / "data" / "results"
    from tomato.harness.models import WeightsInfo

    text = tables.weights_banner(WeightsInfo("m", "random-init:seed=0", False, "0" * 64))
    # One line that says what runs and what its numbers are not.
    assert "random-init" in text and "not accuracy" in text and len(text.splitlines()) == 1 and len(text) < 260
    assert tables.weights_note(True) == "" and "NOT accuracy" in tables.weights_note(False)
    from tomato.harness.models import WEIGHTS_DIR

    ours = WeightsInfo("deit_tiny", f"checkpoint:{WEIGHTS_DIR / 'deit-tiny-imagenette' / 'model.safetensors'}",
                       True, "ab" * 32)
    text = tables.weights_banner(ours)  # the model trained here, named so, without the checkout's path
    assert "**trained here**" in text and "`data/weights/deit-tiny-imagenette`" in text and str(WEIGHTS_DIR) not in text
    other = tables.weights_banner(WeightsInfo("deit_base", "checkpoint:/elsewhere/deit_base.pth", True, "ab" * 32))
    assert "trained here" not in other and "/elsewhere/deit_base.pth" in other
    # A record made in another checkout: named by its weights folder, not the machine's paths.
    prov = {"model": "deit_tiny", "weights_source": "checkpoint:/other/main/data/weights/deit-tiny-x/model.safetensors",
            "weights_sha256": "cd" * 32, "data": "/other/shared/imagenette/val"}
    line = tables.recorded_weights(prov, 3925)
    assert "trained here (`data/weights/deit-tiny-x`" in line and "3,925 photos of `imagenette/val`" in line
    assert "/other" not in line
    assert "trained here" not in tables.recorded_weights({**prov, "weights_source": "checkpoint:/x/data/weights.pth"})


def test_run_folder_and_ratios(tmp_path: Path):
    from tomato.harness.models import WeightsInfo

    w = WeightsInfo("deit_base_patch16_224", "random-init:seed=0", False, "0123456789" * 6 + "abcd")
    assert book_runs.run_folder(tmp_path, "accuracy", w, "smoke") == tmp_path / "accuracy_deit_base_patch16_224_smoke_01234567"
    assert book_runs.run_folder(tmp_path, "tradeoff", w, "/data/imagenet-mini/val").name == \
        "tradeoff_deit_base_patch16_224_imagenet-mini-val_01234567"
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


def test_display_names_and_table_widths():
    names = {s: variants.label(s) for s in (
        "deit", "tome:r=2", "tomato:sim=1e-7", "tomato:keep=0.85", "tomato:sim=1e-7,method=parallel",
        "tomato:tokens=150", "tomato:sim=0.001")}
    assert names == {"deit": "baseline", "tome:r=2": "ToMe r=2", "tomato:sim=1e-7": "ToMato sim=1e-7",
                     "tomato:keep=0.85": "ToMato keep=0.85",
                     "tomato:sim=1e-7,method=parallel": "ToMato parallel sim=1e-7",
                     "tomato:tokens=150": "ToMato tokens=150", "tomato:sim=0.001": "ToMato sim=0.001"}
    shown = pd.DataFrame({"variant": list(names.values()), "speed-up ×": [1.0] * len(names)})
    html = tables.styled(shown, widths={"variant": "30%"}).to_html()
    assert "table-layout: fixed" in html and "width: max(30%, " in html


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


def test_machine_short_names_the_kind_once():
    gpu = {"device": "cuda", "gpu_name": "Test GPU", "machine": {}}
    assert tables.machine_short(gpu) == "Test GPU"
    assert tables.machine_short({**gpu, "gpu_name": "NVIDIA H100 80GB HBM3"}) == "NVIDIA H100 80GB HBM3 GPU"
    cpu = {"device": "cpu", "cpu_model": "AMD EPYC", "machine": {"cpu_count": 2}}
    assert tables.machine_short(cpu) == "AMD EPYC CPU (2 cores)"


# --------------------------------------------------------------------------- what pages call
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


def test_sim_for_cut_and_cut_summary(run_dir: Path):
    [run] = book_runs.recorded_runs(run_dir)
    sim, cut, n = paper.sim_for_cut([run], 14.5)
    assert (sim, n) == (1e-7, 10) and cut == pytest.approx(paper.tokens_cut_range(run.predictions("tomato:sim=1e-07"))[2])
    assert paper.sim_for_cut([run], 14.5, weights_sha256="cd" * 32) is None  # other weights
    assert paper.TOKEN_CUT_MIDDLE == pytest.approx((8.16 + 20.92) / 2)
    summary = paper.cut_summary({"live": np.array([5.0, 10.0, 25.0])})
    assert summary.loc["live", "within paper range (%)"] == pytest.approx(100 / 3)


def test_tome_reach_says_where_tomes_r_stops(run_dir: Path):
    from tomato.book import miniature

    [run] = book_runs.recorded_runs(run_dir)
    reach = miniature.tome_reach(run)
    # 197 tokens: r=2 leaves 197 - 12 * 2 = 173; r=15 leaves 32 to the last block, which may merge (32 - 1) // 2 = 15
    assert (reach["top"], reach["tokens"], reach["depth"], reach["last"], reach["full"]) == ("2", "197", "12", "173", "15")


def test_token_cut_figure_has_one_curve_and_table_row_per_fixed_sim(run_dir: Path):
    import matplotlib.pyplot as plt

    from tomato.book import miniature

    [run] = book_runs.recorded_runs(run_dir)
    df = pd.DataFrame({"variant": ["deit", "tome:r=2", "tomato:sim=1e-07", "tomato:keep=0.5"],
                       "label": ["base", "ToMe", "ToMato", "budget"]})  # a budget has no fixed sim: not drawn
    fig, cuts = miniature.plot_token_cuts(run, df)
    # the fixture's ToMato keeps 155 to 186 of 196 patches
    assert list(cuts["variant"]) == ["ToMato"]
    assert cuts["smallest cut %"].iloc[0] == pytest.approx(100 * (1 - 186 / 196))
    assert cuts["largest cut %"].iloc[0] == pytest.approx(100 * (1 - 155 / 196))
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


