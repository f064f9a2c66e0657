"""The merge-cost page reads the benchmark records through one reader."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tomato.book import merge_cost, parameters

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "data" / "results"


def _row(name: str, median: float, ratio: float, batch: int, ops: int, syncs: int, device: str = "cpu") -> dict:
    return {"name": name, "median_ms": median, "iqr_ms": median / 10, "ratio": ratio, "tokens": 150.0,
            "batch": batch, "device": device, "ops": ops, "syncs": syncs}


def _provenance(device: str, threads: int, **extra: object) -> dict:
    return {"model": "deit_base_patch16_224", "weights": "random-init:seed=0", "device": device,
            "batch_sizes": [1, 4], "runs": 3, "warmup": 1, "cpu_model": "EPYC test", "gpu_name": "Test H100",
            "machine": {"cpu_count": 4, "torch_threads": threads, "load_average_1_5_15_min": [1.0, 2.5, 3.0]}, **extra}


def _write(folder: Path) -> None:
    """A CPU record (batches 1 and 4), a CUDA record (batch 1), and two files that are not
    merge-step benchmarks."""
    cpu = [_row("forward: unpatched", 100.0, 1.0, 1, 227, 0),
           _row("merge step: parallel, sim=1e-7", 2.0, 0.02, 1, 102, 1),
           _row("merge step: faithful, sim=1e-7", 1.0, 0.01, 1, 99, 4),
           _row("merge step: reference-style loop, sim=1e-7", 5.0, 0.05, 1, 4443, 1288),
           _row("forward: unpatched", 400.0, 1.0, 4, 227, 0),
           _row("merge step: parallel, sim=1e-7", 4.0, 0.01, 4, 102, 1),
           _row("merge step: faithful, sim=1e-7", 8.0, 0.02, 4, 120, 6)]
    cuda = [_row("forward: unpatched", 4.0, 1.0, 1, 227, 0, "cuda"),
            _row("merge step: parallel, sim=1e-7", 1.0, 0.25, 1, 102, 1, "cuda"),
            _row("merge step: faithful, sim=1e-7", 3.0, 0.75, 1, 99, 4, "cuda")]
    (folder / "bench_a-cpu.json").write_text(json.dumps({"rows": cpu, "provenance": _provenance("cpu", 2)}))
    (folder / "bench_b-cuda.json").write_text(json.dumps({"rows": cuda, "provenance": _provenance("cuda", 8)}))
    (folder / "bench_exactness.json").write_text(json.dumps({"rows": [{"sim": 1e-7}], "provenance": {}}))
    (folder / "bench_broken.json").write_text("{not json")
    # the old text record must not be read any more
    (folder / "bench_old.txt").write_text("forward: unpatched 999.0\nmerge step: faithful, sim=1e-7 77.0\n"
                                          "merge step: parallel, sim=1e-7 66.0\n")


def test_reader_parses_a_synthetic_record(tmp_path: Path):
    _write(tmp_path)
    records = merge_cost.bench_records(tmp_path)
    assert [r.path.name for r in records] == ["bench_a-cpu.json", "bench_b-cuda.json"]
    cpu, cuda = records
    assert (cpu.device, cpu.threads, cpu.label) == ("cpu", 2, "EPYC test CPU (4 cores), 2 threads")
    assert (cuda.device, cuda.label) == ("cuda", "Test H100 GPU")
    t = merge_cost.merge_table(records)
    assert list(t["record"]) == ["bench_b-cuda.json"] * 2 + ["bench_a-cpu.json"] * 5  # CUDA first
    assert set(t["method"]) == {"parallel", "faithful", "reference-style loop"} and set(t["mode"]) == {"sim=1e-7"}
    row = t[(t["record"] == "bench_a-cpu.json") & (t["batch"] == 4) & (t["method"] == "faithful")].iloc[0]
    assert (row["share"], row["median_ms"], row["forward_ms"], row["ops"], row["syncs"]) == (0.02, 8.0, 400.0, 120, 6)
    assert list(t[t["device"] == "cuda"]["share"]) == [0.25, 0.75]
    view = merge_cost.table_view(t)
    assert view["% of forward"].iloc[0] == pytest.approx(25.0) and "record" in view


def test_reader_on_the_recorded_benchmarks():
    records = merge_cost.bench_records(RESULTS)
    assert records, "no merge-step benchmark under data/results"
    # Directly under the results and in each model's recording folder (python -m tomato record).
    found = [*RESULTS.glob("bench_*.json"), *RESULTS.glob("*/bench_*.json")]
    named = {p: f"{p.parent.name}/{p.name}" if (p.parent / "manifest.json").is_file() else p.name for p in found}
    raw = {named[p]: json.loads(p.read_text())["rows"] for p in found}
    raw = {n: rows for n, rows in raw.items() if isinstance(rows, list)}  # not the exactness study's table
    assert {r.name for r in records} == {n for n, rows in raw.items()
                                             if any(str(x.get("name", "")).startswith("merge step") for x in rows)}
    t = merge_cost.merge_table(records)
    assert set(t["method"]) <= set(merge_cost.METHODS) and t["share"].notna().all()
    for r in records:
        assert r.provenance.get("git") and r.label != r.device  # provenance read, machine named
        merge_rows = [x for x in raw[r.name] if x["name"].startswith("merge step")]
        shares = sorted(t[t["record"] == r.name]["share"])
        assert shares == sorted(x["ratio"] for x in merge_rows)
    cuda_records = [n for n, rows in raw.items() if any(x.get("device") == "cuda" for x in rows)]
    assert set(t[t["device"] == "cuda"]["record"]) == set(cuda_records)
    if cuda_records:
        assert t["device"].iloc[0] == "cuda" and "GPU" in t["machine"].iloc[0]


def test_figure_has_a_panel_per_record_and_says_the_weights():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = merge_cost.bench_records(RESULTS)  # the random-init records and the trained model's
    fig = merge_cost.plot_shares(merge_cost.merge_table(records))
    try:
        assert len(fig.axes) == len(records)
        t = merge_cost.merge_table(records)
        assert [ax.get_title().splitlines()[0] for ax in fig.axes] == [
            machine for _, machine in dict.fromkeys(zip(t["record"], t["machine"]))]
        # Each panel names its own weights; only a random-init one says its merges are untrained.
        titles = {ax.get_title().splitlines()[1]: ax.get_title() for ax in fig.axes}
        for record, weights in dict.fromkeys(zip(t["record"], t["weights"])):
            assert f"weights {weights}" in titles[record]
            assert ("untrained" in titles[record]) == ("random-init" in weights)
    finally:
        plt.close(fig)


def test_the_benchmark_times_the_model_it_is_given(vit, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("timm")
    from tomato.harness import bench, models

    model = vit("deit_tiny_patch16_224")
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded a model"))
    seen = {}

    def forwards(plain, patched, images, k):
        seen["plain"], seen["patched"] = plain, patched
        return {"forward: unpatched": bench._Forward(lambda: None, lambda: None)}

    monkeypatch.setattr(bench, "_forwards", forwards)
    monkeypatch.setattr(bench, "_merge_steps", lambda *a: {})
    rows = bench.run("not-a-model", runs=1, warmup=0, model=model)
    assert seen["plain"] is model and seen["patched"] is not model and not hasattr(model, "_tomato")
    assert [r.name for r in rows] == ["forward: unpatched"] and not math.isnan(rows[0].median_ms)


def test_the_live_benchmark_parameters_have_rules():
    assert parameters.check("bench_batch_sizes", 4) == [4] and parameters.check("bench_threads", "None") is None
    for name, bad in (("bench_runs", 0), ("bench_warmup", -1), ("bench_batch_sizes", [0]), ("bench_threads", 0)):
        with pytest.raises(parameters.Invalid, match=f"parameter {name} = "):
            parameters.check(name, bad)


def test_shares_print_two_significant_digits():
    assert [merge_cost.pct(x) for x in (4.73, 0.418, 0.0475, 0.01, 0.00084)] == ["473%", "42%", "4.8%", "1.0%", "0.084%"]


def test_launch_table_reads_time_per_op_from_the_cuda_record():
    from tomato.book import merge_cost

    df = merge_cost.launch_table(merge_cost.bench_records(RESULTS))
    if df.empty:
        pytest.skip("no CUDA merge-step record")
    # Launch-bound: every forward of the H100 record costs about the same per op.
    assert df["us per op"].max() / df["us per op"].min() < 1.5


def test_static_view_pairs_each_treatment_with_its_own_unpatched_model(tmp_path):
    from tomato.book import merge_cost

    rows = []
    for t, base in (("eager", 10.0), ("onnxruntime", 8.0)):
        rows += [_row(f"{t}: unpatched", base, 1.0, 1, 227, 0),
                 _row(f"{t}: oracle keeps first 138", base * 0.7, 0.7, 1, 228, 0),
                 _row(f"{t}: tomato tokens=138, static", base * 0.77, 0.77, 1, 650, 0)]
    for r in rows[3:]:
        r["ops"] = r["syncs"] = None  # only eager rows are counted
    (tmp_path / "bench-static_x.json").write_text(json.dumps({"rows": rows, "provenance": _provenance("cpu", 2)}))
    (tmp_path / "bench_not-static.json").write_text(json.dumps({"rows": rows[:1], "provenance": {}}))
    records = merge_cost.static_records(tmp_path)
    assert [r.path.name for r in records] == ["bench-static_x.json"]
    view = merge_cost.static_view(merge_cost.static_table(records))
    assert list(view["treatment"]) == ["eager", "onnxruntime"]
    assert view["ToMato speed vs oracle"].round(2).tolist() == [0.91, 0.91]
    assert view["syncs"].tolist() == [0, None]


def test_answer_values_read_the_book_models_newest_records(tmp_path):
    """The page's glued answer: the trained model's newest CPU records, not another model's."""
    ours = "checkpoint:/elsewhere/main/data/weights/deit-x/model.safetensors"

    def bench_rows(oracle: float) -> list[dict]:
        rows = []
        for b in (1, 8):
            rows += [_row("forward: unpatched", 20.0 * b, 1.0, b, 233, 0),
                     {**_row("forward: tomato sim=1e-7, parallel", 21.0 * b, 1.05, b, 326, 1), "vs_oracle": oracle * b,
                      **({"vs_oracle_low": 1.0, "vs_oracle_high": 1.25} if b == 1 else {})},
                     _row("forward: tomato sim=inf (nothing merges), parallel", 21.5 * b, 1.07 + b / 100, b, 326, 1),
                     _row("merge step: parallel, sim=1e-7", 1.0, 0.05 / b, b, 89, 1)]
        return rows
    for name, weights, date, oracle in (("bench_old.json", ours, "2026-01-01", 2.0),
                                        ("bench_new.json", ours, "2026-02-01", 1.09),
                                        ("bench_other.json", "random-init:seed=0", "2026-03-01", 3.0)):
        prov = _provenance("cpu", 2, weights=weights, date_utc=date)
        (tmp_path / name).write_text(json.dumps({"rows": bench_rows(oracle), "provenance": prov}))
    static = [_row("eager: unpatched", 26.0, 1.0, 1, 233, 0), _row("eager: oracle keeps first 138", 20.0, 0.77, 1, 234, 0),
              _row("eager: tomato tokens=138, static", 25.0, 0.96, 1, 748, 0)]
    (tmp_path / "bench-static_x.json").write_text(json.dumps({"rows": static,
                                                              "provenance": _provenance("cpu", 2, weights=ours)}))
    got = merge_cost.answer_values(merge_cost.bench_records(tmp_path), merge_cost.static_records(tmp_path), "deit-x")
    assert (got["share_b1"], got["share_b8"], got["ops"], got["syncs"]) == ("5.0%", "0.62%", "89", "1")
    assert (got["oracle_b1"], got["oracle_b8"], got["inf_b1"], got["inf_b8"]) == ("×0.917 (95% CI 0.800–1.000)", "×0.115", "×0.926", "×0.870")
    assert (got["static_ops"], got["static_syncs"], got["static_eager_b1"]) == ("515", "0", "×0.800")
    assert got["static_onnx_b1"] == "not recorded" and got["machine"] == "EPYC test CPU (4 cores), 2 threads"
    assert set(merge_cost.answer_values([], [], "deit-x").values()) == {"not recorded"}
    # A row without counts (pandas' NA in the table) gives "not recorded", not an error.
    static[2] = {**static[2], "ops": None, "syncs": None}
    (tmp_path / "bench-static_x.json").write_text(json.dumps({"rows": static,
                                                              "provenance": _provenance("cpu", 2, weights=ours)}))
    got = merge_cost.answer_values([], merge_cost.static_records(tmp_path), "deit-x")
    assert (got["static_ops"], got["static_syncs"], got["static_eager_b1"]) == ("not recorded", "not recorded", "×0.800")
