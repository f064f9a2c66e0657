"""Figure 3 in the paper's setting (tomato.book.measures, figures.plot_tradeoff_panels,
figures.place_labels) and the baseline's diversity beside agreement figures."""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402

from tomato.book import notes, figures, measures, paper, runs  # noqa: E402


def sweep_rows() -> pd.DataFrame:
    """A hand-made sweep: baseline, ToMe r=2/8, ToMato sim=1e-7 and keep=0.7."""
    return pd.DataFrame([
        # variant, speed-up with its interval, agreement %, GFLOPs, tokens after block 0
        {"variant": "deit", "speedup": 1.0, "speedup_low": 1.0, "speedup_high": 1.0,
         "top1_agreement": 100.0, "gflops_eval": 35.1, "tokens_mean": 196.0, "top1": 0.1},
        {"variant": "tome:r=2", "speedup": 0.99, "speedup_low": 0.95, "speedup_high": 1.04,
         "top1_agreement": 99.9, "gflops_eval": 32.9, "tokens_mean": 194.0, "top1": 0.1},
        {"variant": "tome:r=8", "speedup": 1.22, "speedup_low": 1.10, "speedup_high": 1.30,
         "top1_agreement": 99.3, "gflops_eval": 26.2, "tokens_mean": 188.0, "top1": 0.1},
        {"variant": "tomato:sim=1e-07", "speedup": 1.04, "speedup_low": 0.97, "speedup_high": 1.12,
         "top1_agreement": 99.2, "gflops_eval": 32.5, "tokens_mean": 180.7, "top1": 0.1},
        {"variant": "tomato:keep_ratio=0.7", "speedup": 1.25, "speedup_low": 1.20, "speedup_high": 1.30,
         "top1_agreement": 93.2, "gflops_eval": 24.9, "tokens_mean": 137.9, "top1": 0.1},
    ])


def test_paper_points_are_table1_relative_to_deit():
    pp = measures.paper_points().set_index("variant")
    assert pp.loc[paper.BASELINE, "rel_latency"] == 1.0
    assert pp.loc[paper.TOMATO, "rel_latency"] == pytest.approx(10.2804 / 13.2132)
    assert pp.loc[paper.TOME, "rel_latency"] == pytest.approx(10.9445 / 13.2132)
    assert pp.loc[paper.TOMATO, "top1"] == 80.14


def test_relative_latency_inverts_the_speedup_and_its_interval():
    df = measures.relative_latency(sweep_rows()).set_index("variant")
    r = df.loc["tome:r=8"]
    assert r["rel_latency"] == pytest.approx(1 / 1.22)
    assert (r["rel_low"], r["rel_high"]) == (pytest.approx(1 / 1.30), pytest.approx(1 / 1.10))
    bare = measures.relative_latency(sweep_rows().drop(columns=["speedup_low", "speedup_high"]))
    assert bare["rel_low"].isna().all()


def test_equal_flops_pairs_are_one_per_tome_point():
    rows = pd.concat([sweep_rows(), pd.DataFrame([  # the parallel visit lands on sim=1e-7's point
        {"variant": "tomato:method=parallel,sim=1e-07", "speedup": 1.05, "top1_agreement": 99.2,
         "gflops_eval": 32.5, "tokens_mean": 180.7}])], ignore_index=True).assign(n=1000)
    pairs = {p["tome"]: p for p in measures.equal_flops_pairs(rows)}
    assert sorted(pairs) == ["tome:r=2", "tome:r=8"]  # each ToMe point once, the twin ToMato point once
    assert pairs["tome:r=2"]["tomato"] == "tomato:sim=1e-07"
    assert pairs["tome:r=8"]["tomato"] == "tomato:keep_ratio=0.7" and pairs["tome:r=8"]["tomato_value"] == 93.2
    assert pairs["tome:r=8"]["tome_n"] == 1000
    assert measures.equal_flops_pairs(rows, tolerance=0.01) == []


def test_conclusion_is_written_from_the_rows():
    rows = sweep_rows().assign(n=1000)
    text = measures.conclusion(rows, pretrained=False, where="this run")
    assert "0.778 of DeiT-B's latency" in text and "0.828" in text  # the paper, from Table 1
    assert f"{1 / 1.04:.3f} (95% interval {1 / 1.12:.3f}–{1 / 0.97:.3f}), not resolved" in text
    assert "ToMato keep=0.7's, 0.800 (95% interval 0.769–0.833), faster than the baseline" in text
    assert "from 93.2% (ToMato keep=0.7) to 99.2% (ToMato sim=1e-7)" in text
    assert "ToMe keeps more agreement in 2 of 2 pairs" in text
    assert ("ToMe r=8 99.3% (7 of 1,000 images changed) at 26.2 GFLOPs vs ToMato keep=0.7 93.2% "
            "(68 of 1,000 images changed) at 24.9") in text
    assert "cannot be checked" in text and "timed on images" not in text
    # Change the record, and the sentences follow it.
    rows.loc[rows["variant"] == "tomato:keep_ratio=0.7", ["top1_agreement", "tokens_timed"]] = [99.8, 120.0]
    text = measures.conclusion(rows, pretrained=False)
    assert "ToMe keeps more agreement in 1 of 2 pairs, ToMato in 1" in text
    assert "timed on images that kept 120.0 tokens after block 0 on average, against 137.9" in text
    trained = measures.conclusion(sweep_rows(), pretrained=True)
    assert "cannot be checked" not in trained and "top-1 runs from" in trained
    assert "does not record whether" in measures.conclusion(sweep_rows(), pretrained=None)
    assert "holds no rows" in measures.conclusion(sweep_rows().iloc[:0], pretrained=False)


def test_a_bound_near_one_is_not_rounded_onto_it():
    row = {"rel_latency": 1.05, "rel_low": 1.0046, "rel_high": 1.097}
    assert measures._resolved(row) == "slower than the baseline"
    assert measures._ratio(row) == "1.050 (95% interval 1.005–1.097)"


def _labels(ax) -> list[Text]:
    return [c for c in ax.get_children() if isinstance(c, Annotation)]


def test_place_labels_leaves_no_two_labels_overlapping():
    fig, ax = plt.subplots(figsize=(5, 3.5))
    # Ten points close together on one line, as a sweep whose variants all keep 100% agreement.
    items = [(0.80 + 0.02 * k, 100.0, f"keep=0.{k}", "black") for k in range(10)]
    ax.plot([x for x, *_ in items], [y for _, y, *_ in items], "o")
    ax.set_ylim(70, 101)
    fig.tight_layout()
    crowded = figures.place_labels(ax, items)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    boxes = [Text.get_window_extent(t, renderer) for t in _labels(ax)]
    assert len(boxes) == 10 and crowded == 0
    assert not [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    plt.close(fig)


def test_panels_draw_the_paper_and_no_chance_level_top1():
    div = {"n": 10, "distinct": 2, "entropy_bits": 0.9, "max_entropy_bits": 3.3, "top_class": 5,
           "top_share": 0.7, "classes_seen": 10, "degenerate": True}
    fig = figures.plot_tradeoff_panels(sweep_rows(), pretrained=False, title="t", diversity=div)
    a, b, c, d = fig.axes
    assert "paper" in a.get_title() and a.get_ylabel().startswith("top-1 (%)")
    assert {t.get_text() for t in _labels(a)} == {"DeiT-B", "ToMe-B (r=2)", "ToMato-B (sim=1e-7)"}
    assert "agreement" in b.get_ylabel() and "relative" in b.get_xlabel()
    assert a.get_xlim() == b.get_xlim()  # ratios read alike
    assert not any(ax.get_ylabel() == "top-1 (%)" for ax in (b, c, d))  # chance-level top-1 not drawn
    assert any("DEGENERATE" in t.get_text() for t in fig.texts)
    trained = figures.plot_tradeoff_panels(sweep_rows().assign(top1=[81, 80.9, 80.5, 80.2, 79.0]),
                                           pretrained=True)
    assert trained.axes[1].get_ylabel() == "top-1 (%)"
    assert "paper, Table 1" in trained.axes[1].get_legend_handles_labels()[1]
    plt.close("all")


def test_diversity_goes_beside_every_agreement_figure(tmp_path):
    preds = {"deit": pd.DataFrame({"index": range(10), "top1": [3] * 8 + [4, 5], "label": range(10),
                                   "top5": ["3 1 2 0 9"] * 10}),
             "tome:r=2": pd.DataFrame({"index": range(10), "top1": [3] * 10, "label": range(10),
                                       "top5": ["3 1 2 0 9"] * 10})}
    div = runs.baseline_diversity(preds)
    assert (div["n"], div["distinct"], div["classes_seen"], div["degenerate"]) == (10, 3, 10, True)
    assert div["top_share"] == pytest.approx(0.8)
    note = notes.diversity_note(div)
    assert note.startswith("> **Warning: degenerate classifier.**") and "3 distinct top-1 classes over 10" in note
    assert "the images cover 10 classes" in note and "Flagged because one class takes 80.0%" in note
    unlabelled = runs.baseline_diversity({k: v.assign(label=-1) for k, v in preds.items()})
    assert not unlabelled["labelled"]
    assert "true classes are not recorded" in notes.diversity_note(unlabelled)
    ax = figures.plot_agreement(measures.prediction_agreement(preds), diversity=div)
    assert any("DEGENERATE" in t.get_text() for t in ax.texts)
    varied = {k: v.assign(top1=range(10)) for k, v in preds.items()}
    ok = runs.baseline_diversity(varied)
    assert not ok["degenerate"] and "Warning" not in notes.diversity_note(ok)
    assert runs.baseline_diversity({"tome:r=2": preds["tome:r=2"]}) is None
    plt.close("all")


def test_a_page_says_each_warning_once_in_full():
    from tomato.book import latency

    said: set[str] = set()
    rows = sweep_rows().assign(n=1000)
    first, second = (measures.conclusion(rows, pretrained=False, said=said) for _ in range(2))
    for once in ("0.778 of DeiT-B's latency", "flatters its winner", "cannot be checked"):
        assert once in first and once not in second
    assert "ToMato keep=0.7's, 0.800" in second  # the run's own numbers stay
    noisy = pd.DataFrame({"median_s": [1.0, 0.8], "iqr_s": [0.05, 0.4], "speedup_low": 0.9, "speedup_high": 1.1})
    full, short = (notes.timing_noise(noisy, said=said) for _ in range(2))
    assert "interval excludes 1" in full and short.startswith("> **Spread of single rounds:** up to 50% of the median")
    busy = {"machine": {"load_average_1_5_15_min": [3.0, 2.0, 1.0], "cpu_count": 2}}
    assert "Warning: the machine was overloaded" in latency.load_warning(busy, said)
    assert latency.load_warning(busy, said).startswith("**Overloaded machine** (load 3.0, 2.0, 1.0 with 2 CPU cores)")
    assert "Warning" in latency.load_warning(busy) and "Warning" in latency.load_warning(busy)  # no page: in full
