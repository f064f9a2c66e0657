"""The paper protocol on a model: NVTX ranges named as the authors', per-forward rows, the CLI."""
from __future__ import annotations

import itertools
import json
import sys
import types

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from tomato.harness import ranges, speed
from tomato.harness.cli import main
from tomato.harness.variants import parse


class Recorder:
    """A binding that records pushes and pops, checking they nest."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.open: list[str] = []

    def binding(self) -> ranges.Binding:
        return ranges.Binding("recorder", self.push, self.pop)

    def push(self, name: str) -> None:
        self.events.append(name)
        self.open.append(name)

    def pop(self) -> None:
        self.open.pop()


@pytest.fixture(scope="module")
def vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             num_classes=10).eval()


def test_find_binding_prefers_the_nvtx_package(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    fake = types.SimpleNamespace(__version__="9.9", push_range=lambda name: calls.append(("push", name)),
                                 pop_range=lambda: calls.append(("pop",)))
    monkeypatch.setitem(sys.modules, "nvtx", fake)
    b = ranges.find_binding()
    assert b.name.startswith("nvtx")
    with pytest.raises(RuntimeError):
        with ranges.nvtx_range("Forward 0", b):
            raise RuntimeError("inner")  # the range is closed anyway
    assert calls == [("push", "Forward 0"), ("pop",)]


def test_no_binding_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvtx", None)  # makes `import nvtx` fail
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    b = ranges.find_binding()
    assert b.name.startswith("none")
    with ranges.nvtx_range("x", b):
        pass


@pytest.mark.parametrize("variant, merges", [("deit", (0, 0)), ("tome:r=2", (1, 1)), ("tomato:sim=1e-7", (1, 0))])
def test_paper_ranges_name_stages_as_the_authors(vit, variant: str, merges: tuple[int, int]) -> None:
    rec = Recorder()
    parse(variant).apply(vit)
    stages = ranges.StageTimes(rec.binding())
    with torch.inference_mode(), ranges.paper_ranges(vit, stages):
        vit(torch.randn(1, 3, 32, 32))
    expected = ["patch embedding"]
    for m in merges:  # ToMato merges in block 0 only, ToMe in every block
        expected += ["decoder", "attention"] + ["ToME"] * m + ["feed forward"]
    assert rec.events == expected and rec.open == []
    assert set(stages.seconds) == set(expected)
    # Everything is removed on exit: another forward pushes nothing.
    rec.events.clear()
    with torch.inference_mode():
        vit(torch.randn(1, 3, 32, 32))
    assert rec.events == []
    if hasattr(vit, "_tomato"):
        assert vit._tomato.ranges is None


def test_paper_protocol_rows_and_forward_ranges(vit, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(ranges, "find_binding", rec.binding)
    ticks = itertools.count(0.0, 0.5)  # every clock read advances 0.5 s
    threads = torch.get_num_threads()
    rows = speed.paper_protocol(vit, ["deit", "tomato:sim=1e-7"], torch.randn(3, 32, 32), forwards=3,
                                threads=1, clock=lambda: next(ticks), progress=False)
    assert torch.get_num_threads() == threads  # restored
    assert [(r["variant"], r["forward"]) for r in rows] == [
        ("deit", 0), ("deit", 1), ("deit", 2),
        ("tomato:sim=1e-07", 0), ("tomato:sim=1e-07", 1), ("tomato:sim=1e-07", 2)]
    assert all(r["seconds"] == pytest.approx(0.5) and r["threads"] == 1 for r in rows)
    assert [e for e in rec.events if e.startswith("Forward")] == ["Forward 0", "Forward 1", "Forward 2"] * 2
    assert all(r["merge_s"] == 0.0 for r in rows[:3]) and all(r["merge_s"] > 0 for r in rows[3:])
    assert rows[0]["tokens"] == 16 and rows[3]["tokens"] <= 16
    assert not hasattr(vit, "_tomato")  # left as the first variant (unpatched)
    with pytest.raises(ValueError, match="batch 1"):
        speed.paper_protocol(vit, ["deit"], torch.randn(2, 3, 32, 32), progress=False)


def test_paper_summary_by_hand() -> None:
    rows = [{"variant": "v", "label": "V", "forward": i, "seconds": t, "merge_s": 0.1 * t, "tokens": 9}
            for i, t in enumerate([4.0, 1.0, 2.0, 3.0])]
    (s,) = speed.paper_summary(rows)
    assert s["forwards"] == 4 and s["mean_s"] == pytest.approx(2.5)
    assert s["mean_after_first_s"] == pytest.approx(2.0) and s["median_s"] == pytest.approx(2.5)
    assert (s["min_s"], s["max_s"]) == (1.0, 4.0)
    assert s["merge_share"] == pytest.approx(0.1) and s["merge_ms"] == pytest.approx(250.0)


def test_measure_variants_gives_speedup_intervals(vit) -> None:
    ticks = itertools.count(0.0, 0.5)
    rows = speed.measure_variants(vit, ["deit", "tomato:sim=1e-7"], torch.randn(2, 3, 32, 32), runs=4,
                                  warmup=0, clock=lambda: next(ticks), progress=False)
    for r in rows:
        assert r["protocol"] == "robust" and r["images"] == 2 and r["warmup"] == 0
        assert r["speedup_low"] <= r["speedup"] <= r["speedup_high"]
        assert "paper_mean_s" not in r  # the invented cold-start "paper" mean is gone


def test_describe_is_written_from_the_config() -> None:
    paper = speed.describe({"protocol": "paper", "device": "cpu", "threads": 4, "variants": ["a", "b", "c"],
                            "image": "x.png", "forwards": 11})
    assert "one image (x.png)" in paper and "11 forwards" in paper and "4 CPU threads" in paper
    assert "no warm-up" in paper and "(3)" in paper
    robust = speed.describe({"protocol": "robust", "device": "cuda", "variants": ["a", "b"], "images": 8,
                             "runs": 37, "warmup": 5, "budget_s": 60, "batch_sizes": [1, 8]})
    assert "5 untimed warm-up rounds" in robust and "at least 37 timed rounds and 60 s of them" in robust
    assert "8 images" in robust and "batch size 1, 8" in robust and "on cuda" in robust
    old = speed.describe({"device": "cpu", "variants": ["a"], "runs": 20, "warmup": 2, "batch_size": 1})
    assert old.startswith("Interleaved timing (an older record that names no protocol)")
    assert "how many was not recorded" in old and "bootstrap" not in old and "then 20 timed rounds" in old


def test_cli_paper_protocol_writes_a_record(tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "paper.json"
    rc = main(["time", "--protocol", "paper", "--model", "deit_tiny_patch16_224", "--random-weights",
               "--variants", "deit", "tomato:sim=1e-7", "--forwards", "2", "--threads", "1", "--quiet",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["config"]["protocol"] == "paper" and record["config"]["forwards"] == 2
    assert record["config"]["threads"] == 1 and record["config"]["pretrained"] is False
    assert record["provenance"]["machine"]["torch_threads"] == 1  # the machine as timed
    assert len(record["rows"]) == 4 and len(record["summary"]) == 2
    assert record["provenance"]["git"]["commit"]
    assert speed.describe(record["config"]) in printed
    rc = main(["time", "--protocol", "paper", "--model", "deit_tiny_patch16_224", "--random-weights",
               "--image", "9999", "--quiet"])
    assert rc == 2 and "error: image index 9999" in capsys.readouterr().err


def test_paper_reports_transcribed_and_compared() -> None:
    from tomato.book import paper

    means = {r["report"]: r["mean_s"] for r in paper.report_rows()}
    # The shared facts file's "mean 0-10" column, to its three decimals.
    assert means == pytest.approx({"ToMato_r_10-20": 9.974, "ToMato_sim0.0005": 10.722, "ToMato_sim0.001": 10.735,
                                   "ToMato_sim0.01": 10.926, "test (ddefb3d)": 10.213}, abs=6e-4)
    assert all(len(r.forwards) == 11 for r in paper.REPORTS)
    assert all(0.030 < r.merge_share < 0.034 for r in paper.REPORTS)  # "about 3.0-3.4%"
    pairs = paper.pairwise()
    assert len(pairs) == 10 and all(p["ci_low"] <= p["diff"] <= p["ci_high"] for p in pairs)
    gap = paper.table1_gap()
    assert gap["gap_s"] == pytest.approx(10.9445 - 10.2804)


def _provenance(load: list[float], cores: int) -> dict:
    return {"machine": {"load_average_1_5_15_min": load, "cpu_count": cores}}


def test_load_warning_only_where_the_load_exceeds_the_cores() -> None:
    from tomato.book import latency

    busy = latency.load_warning(_provenance([13.5, 13.4, 12.0], 2))
    assert "overloaded" in busy and "13.5, 13.4, 12.0" in busy and "2 CPU cores" in busy
    assert latency.load_warning(_provenance([3.0, 1.0, 0.5], 2))  # any of the three averages
    assert latency.load_warning(_provenance([1.9, 2.0, 0.5], 2)) == ""  # at most one job per core
    assert latency.load_warning(_provenance([0.6, 0.1, 0.0], 16)) == ""
    assert latency.load_warning({}) == "" and latency.load_warning({"machine": {"cpu_count": 2}}) == ""
    assert latency.load_warning(_provenance("unknown", 2)) == ""  # type: ignore[arg-type]
    from pathlib import Path

    quiet = (Path("quiet.json"), {"provenance": _provenance([0.5, 0.5, 0.5], 4)})
    busy = (Path("busy.json"), {"provenance": _provenance([9.0, 9.0, 9.0], 4)})
    kept, note = latency.steady_runs([quiet, busy])
    assert kept == [quiet] and "`busy.json` (load 9.0, 9.0, 9.0 with 4 CPU cores)" in note
    assert "quiet.json" not in note and latency.steady_runs([quiet]) == ([quiet], "")


def test_recorded_paper_runs_warn_by_their_own_load() -> None:
    from pathlib import Path

    from tomato.book import latency

    records = latency.recorded_timings(Path(__file__).resolve().parents[2] / "data" / "results", "paper")
    assert records
    for path, record in records:
        prov = record.get("provenance") or {}
        load, cores = latency.machine_load(prov)
        assert bool(latency.load_warning(prov)) == (max(load) > cores), path.name


def test_summary_column_names_the_reference_variant() -> None:
    from tomato.book import latency

    rows = [{"variant": v, "label": v, "seconds": s, "merge_s": 0.0, "tokens": 197}
            for v, s in (("deit", 2.0), ("deit", 2.0), ("tomato:sim=1e-7", 1.5), ("tomato:sim=1e-7", 1.5))]
    table = latency.paper_summary_table(rows)
    column = latency.baseline_column("deit")
    assert table.columns[-1] == column == "mean vs deit %"
    assert table[column].tolist() == pytest.approx([0.0, -25.0])
    assert latency.paper_summary_table(rows[2:] + rows[:2]).columns[-1] == "mean vs tomato:sim=1e-7 %"


def test_report_sentences_are_written_from_the_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    from tomato.book import latency, paper

    fake = (paper.Report("a", (1.0, 3.0), 20.0, 20.0), paper.Report("b", (4.0, 4.0), 40.0, 40.0))
    monkeypatch.setattr(paper, "REPORTS", fake)
    monkeypatch.setattr(paper, "PAPER_TABLE1_S", {"DeiT-B": 10.0, "ToMe-B": 8.0, "ToMato-B": 7.5})
    v = latency.paper_values()
    assert (v["reports"], v["forward_min"], v["forward_max"], v["mean_min"], v["mean_max"]) == \
        ("2", "1.0", "4.0", "2.00", "4.00")
    assert (v["merge_min_ms"], v["merge_max_ms"], v["share_min_pct"], v["share_max_pct"]) == ("20", "40", "1.0", "1.0")
    assert (v["max_deviation"], v["sd_min"], v["sd_max"], v["tome_gap"]) == ("1.00", "0.00", "1.41", "0.50")
    # Report means span 2.00 s: ToMe-B - ToMato-B (0.50 s) is within it, DeiT-B - ToMato-B (2.50 s) is not.
    assert (v["means_span"], v["tome_pct"], v["tome_within"]) == ("2.00", "6.2", "is within")
    assert (v["deit_gap"], v["deit_pct"], v["deit_within"], v["deit_times_span"]) == ("2.50", "25.0", "exceeds", "1.2")


def test_one_label_with_different_weights_is_named() -> None:
    from tomato.book import tables

    def rec(sha: str, torch: str, source: str = "random-init:seed=0") -> dict:
        return {"config": {"weights_source": source, "weights_sha256": sha * 32}, "provenance": {"torch": torch}}

    text = tables.one_label({"a.json": rec("ab", "2.11.0"), "b.json": rec("cd", "2.14.1"), "c.json": rec("cd", "2.14.1"),
                            "ours.json": rec("ef", "2.14.1", "checkpoint:x")})
    assert text.startswith("**One label, 2 different weights:** `random-init:seed=0` stands for sha256 `abababab…`")
    assert "(torch 2.14.1: `b.json`, `c.json`)" in text and "ours.json" not in text
    assert tables.one_label({"a.json": rec("ab", "2.11.0"), "b.json": rec("ab", "2.11.0")}) == ""


def test_a_source_is_printed_without_the_recording_checkout() -> None:
    from tomato.book import tables

    assert tables.source_label("checkpoint:/w/main/data/weights/deit-x/model.safetensors") == \
        "`data/weights/deit-x` (trained here)"
    assert tables.source_label("random-init:seed=0") == "`random-init:seed=0`"


def test_payoff_verdicts_bracket_the_crossing_between_measured_cuts():
    import pandas as pd

    from tomato.book.latency import payoff_verdicts

    def rows(model, batch, points):
        return [{"model": model, "batch": batch, "cut_pct": c, "speedup_low": lo, "oracle_low": olo,
                 "tokens_padded": 196 * (1 - c / 100)} for c, lo, olo in points]

    df = pd.DataFrame(
        rows("a", 1, [(30.6, 1.07, 1.2), (4.1, 0.91, 0.98), (12.8, 0.95, 1.05), (20.1, 1.01, 1.1)])
        + rows("a", 8, [(5.0, 0.9, 0.9), (40.0, 0.99, 0.95)])
        + rows("b", 1, [(3.0, 1.02, 1.03), (9.0, 1.1, 1.2)])
        + rows("c", 8, [(1.5, 1.0, 1.11), (1.5, 1.0, 1.02)]))
    v = payoff_verdicts(df).set_index(["model", "batch"])
    assert v.loc[("a", 1), "ToMato becomes faster"] == "at a cut between 12.8% and 20.1%"
    assert v.loc[("a", 1), "the oracle becomes faster"] == "at a cut between 4.1% and 12.8%"
    assert v.loc[("a", 8), "ToMato becomes faster"] == "at no cut measured (up to 40.0%)"
    assert v.loc[("b", 1), "ToMato becomes faster"] == "at a cut of 3.0% or less"
    assert v.loc[("a", 1), "largest cut measured"] == "30.6%"
    # Keeping 193 of 196 tokens can speed a forward up by (196/193)^2 = 1.031 at most: an
    # oracle interval from 1.11 up measures the machine; one from 1.02 up does not.
    assert v.loc[("c", 8), "oracle above (N/k)²"] == "1 of 2 cuts"
    assert (v.drop(index=[("c", 8)])["oracle above (N/k)²"] == "no cut").all()


def test_a_page_says_each_warning_once_in_full():
    from tomato.book import latency

    said: set[str] = set()
    busy = {"machine": {"load_average_1_5_15_min": [3.0, 2.0, 1.0], "cpu_count": 2}}
    assert "Warning: the machine was overloaded" in latency.load_warning(busy, said)
    assert latency.load_warning(busy, said).startswith("**Overloaded machine** (load 3.0, 2.0, 1.0 with 2 CPU cores)")
    assert "Warning" in latency.load_warning(busy) and "Warning" in latency.load_warning(busy)  # no page: in full
