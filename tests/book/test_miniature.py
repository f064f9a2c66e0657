"""Table 1 in miniature: paired differences, equal-GFLOPs pairs, the answer written from rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from tomato.book import miniature, stats


def test_paired_difference_counts_discordant_photos():
    base = np.array([1, 1, 1, 0, 0, 1, 0, 1, 1, 1] * 40, bool)
    other = base.copy()
    other[:40] = ~other[:40]  # 40 photos flip: 28 right->wrong, 12 wrong->right
    d = stats.paired(base, other, seed=0)
    b, c = int((base & ~other).sum()), int((~base & other).sum())
    assert (d["b"], d["c"]) == (b, c) and b + c == 40
    assert d["diff"] == pytest.approx(100 * (c - b) / len(base))
    assert d["p"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue)
    assert d["low"] < d["diff"] < d["high"] < 0  # 16 net losses in 400: resolved below 0
    same = stats.paired(base, base)
    assert same["diff"] == same["low"] == same["high"] == 0 and same["p"] == 1.0


def _rows() -> pd.DataFrame:
    def row(variant, label, kind, top1, d, lo, hi, cut, gflops):
        return {"variant": variant, "label": label, "kind": kind, "top1": top1, "top5": 90.0, "d_top1": d,
                "d_low": lo, "d_high": hi, "p": 0.5, "tokens_mean": 196 * (1 - cut / 100), "tokens_p5": 0,
                "tokens_p95": 0, "cut_pct": cut, "gflops": gflops, "speedup": 1.1, "speedup_low": 1.0,
                "speedup_high": 1.2, "n": 400}
    return pd.DataFrame([
        row("deit", "baseline", "deit", 70.0, 0, 0, 0, 0, 1.26),
        row("tomato:sim=1e-07", "ToMato sim=1e-7", "tomato", 69.5, -0.5, -1.0, 0.1, 7.5, 1.17),
        row("tomato:sim=1e-15", "ToMato sim=1e-15", "tomato", 68.0, -2.0, -2.8, -1.2, 15.1, 1.07),
    ])


def test_the_answers_values_come_from_the_rows_and_say_not_recorded_where_absent():
    flops = pd.DataFrame([{"tomato": "ToMato sim=1e-7", "tome": "ToMe r=2", "diff": 0.2, "low": -0.2,
                           "high": 0.6, "p": 0.3},
                          {"tomato": "ToMato sim=1e-15", "tome": "ToMe r=8", "diff": -1.5, "low": -2.5,
                           "high": -0.5, "p": 0.01}])
    v = miniature.answer_values(_rows(), flops)
    assert (v["base_top1"], v["photos"]) == ("70.0", "400")
    assert (v["sim7_cut"], v["sim7_d"], v["sim7_low"], v["sim7_high"], v["sim7_word"]) == \
        ("7.5", "-0.50", "-1.00", "+0.10", "within the noise")
    assert (v["near_label"], v["near_cut"], v["near_d"], v["near_word"]) == ("ToMato sim=1e-15", "15.1", "-2.00", "lower")
    assert v["tome_tally"].startswith("behind in 1 of 2 pairs, ahead in none") and v["tome_pair"] == "ToMe r=2"
    assert (v["speed_b1"], v["speed_b1_low"], v["speed_b1_high"], v["speed_b1_word"]) == \
        ("1.100", "1.000", "1.200", "not measurably faster")
    assert v["tome2_speed_word"] == "not recorded"  # no ToMe row
    tome = {**_rows().iloc[0].to_dict(), "variant": "tome:r=2", "label": "ToMe r=2", "kind": "tome",
            "speedup": 0.73, "speedup_low": 0.71, "speedup_high": 0.74}
    u = miniature.answer_values(pd.concat([_rows(), pd.DataFrame([tome])], ignore_index=True), flops)
    assert (u["tome2_speed"], u["tome2_speed_low"], u["tome2_speed_high"], u["tome2_speed_word"]) == \
        ("0.730", "0.710", "0.740", "slower")
    nulls = pd.DataFrame([{"setting": "sim=1e-07", "null": "first k tokens kept", "diff": -0.56, "low": -1.15,
                           "high": -0.03}])
    w = miniature.answer_values(_rows(), flops, nulls=nulls)
    assert (w["null_first_d"], w["null_first_word"], w["null_random_word"]) == ("-0.56", "behind", "not recorded")
    empty = miniature.answer_values(None, None)
    assert set(empty) == set(v) and set(empty.values()) == {"not recorded"}


def test_tomato_against_each_null_is_paired_on_the_same_photos():
    n = 400
    label = np.arange(n) % 10
    hits = np.arange(n) >= 40  # ToMato misses photos 0-39
    nulls = {"tomato": (hits, range(n)), "random_groups": (np.arange(n) >= 100, range(n)),
             # the same photos right as ToMato, its rows in reverse: pairing by row order would see 80 flips
             "first_keep": (hits, range(n - 1, -1, -1)), "tome": (hits, range(n))}
    rows = [{"setting": setting, "variant": variant, "index": i, "label": int(label[i]),
             "top1": int(label[i]) if right[i] else -1, "top1_base": int(label[i]), "tokens": 180}
            for setting in ("sim=1e-07", "sim=1e-15") for variant, (right, order) in nulls.items() for i in order]
    pairs = miniature.null_pairs({"rows": rows}).set_index(["setting", "null"])
    groups = pairs.loc[("sim=1e-07", "random groups, ToMato's sizes")]
    assert groups["diff"] == pytest.approx(100 * 60 / n)  # photos 40-99: only ToMato right
    assert groups["low"] > 0 and groups["n"] == n
    first = pairs.loc[("sim=1e-07", "first k tokens kept")]
    assert first["diff"] == first["low"] == first["high"] == 0 and first["p"] == 1.0
    assert "ToMe, r matching ToMato's tokens" not in pairs.index.get_level_values("null")  # equal GFLOPs instead
    # The null table names the r its ToMe ran at (the equal-GFLOPs table may pair another r).
    for row in rows:
        row["tome_r"] = 3 if row["variant"] == "tome" else None
    labels = set(miniature.nulls({"rows": rows})["label"])
    assert "ToMe r=3, matching ToMato's tokens" in labels and "random groups, ToMato's sizes" in labels


def test_table_1_beside_the_paper_adds_tome_at_tomatos_gflops_once():
    rows = pd.concat([_rows(), _rows().iloc[[1]].assign(variant="tome:r=2", label="ToMe r=2", kind="tome"),
                      _rows().iloc[[1]].assign(variant="tome:r=4", label="ToMe r=4", kind="tome", d_top1=-0.9)])
    pair = pd.DataFrame([{"tomato": "ToMato sim=1e-7", "tome": "ToMe r=4", "diff": 0.4, "low": 0.1, "high": 0.7}])
    beside = miniature.paper_beside(rows, pair)
    ours = list(beside["ours (DeiT-Ti, Imagenette)"])
    assert ours == ["unpatched", "ToMe r=2", "ToMato sim=1e-7", "ToMe r=4 (ToMato's GFLOPs)"]
    assert beside["our Δ top-1 [95% CI]"].iloc[-1].startswith("-0.90 [")
    # when ToMato's GFLOPs match the paper's own ToMe r=2, that row says so instead of repeating
    same = miniature.paper_beside(rows, pair.assign(tome="ToMe r=2"))
    assert list(same["ours (DeiT-Ti, Imagenette)"]) == ["unpatched", "ToMe r=2 (also at ToMato's GFLOPs)",
                                                        "ToMato sim=1e-7"]


def test_faster_or_slower_only_where_the_interval_excludes_one():
    from tomato.book.stats import speed_word

    assert speed_word(1.2, 1.05, 1.3) == "faster"
    assert speed_word(0.9, 0.85, 0.95) == "slower"
    assert speed_word(0.97, 0.89, 1.05) == "not faster"
    assert speed_word(1.04, 0.98, 1.10) == "not measurably faster"


def test_a_difference_gets_its_word_only_where_the_interval_excludes_zero():
    from tomato.book.stats import word

    assert word(0.1, 0.5) == "higher" and word(-0.5, -0.1) == "lower" and word(-0.2, 0.3) == "within the noise"
    assert word(0.0, 0.4) == "within the noise" and word(-0.4, 0.0) == "within the noise"  # touching zero
    assert word(0.2, 0.9, ("ahead of", "behind", "level with")) == "ahead of"


def test_tally_says_paired_differences_in_words():
    from tomato.book.stats import tally

    rows = [{"low": 0.1, "high": 0.5}, {"low": -0.9, "high": -0.2}, {"low": -0.8, "high": -0.1},
            {"low": -0.3, "high": 0.2}]
    assert tally(rows) == "behind in 2 of 4 pairs, ahead in 1, level within the noise in 1"
    assert tally(rows[:1]) == "ahead in 1 of 1 pair, behind in none, level within the noise in none"
    assert tally(rows[3:]) == "level within the noise in the one pair"
    assert tally(rows[3:] * 3) == "level within the noise in all 3 pairs"
