"""python -m tomato bench --payoff: ToMato's speed-up against its token cut, beside the oracle's."""
from __future__ import annotations

import json

import pytest

from tomato.harness import cli, data, payoff, records


def test_payoff_points_hold_the_cut_the_padded_length_and_both_speedups(vit, tmp_path):
    model = vit()
    points = payoff.run(model, [1e-7, 0.0], (1, 2), runs=3, warmup=0)
    assert [(p.sim, p.batch) for p in points] == [(1e-7, 1), (0.0, 1), (1e-7, 2), (0.0, 2)]
    everything = [p for p in points if p.sim == 0.0]
    # sim=0 merges every patch into one token: 195 of 196 cut, and the oracle keeps one.
    assert all(p.tokens_padded == 1 and p.cut_pct == pytest.approx(100 * 195 / 196) for p in everything)
    # The timed calls rotate through the photos' batches: a point's cut is the mean over every
    # photo, and its padded length the mean of each batch's largest count (the length that
    # batch computes on), not the first photo's or the first batch's.
    import copy

    import torch

    from tomato.core import patch
    from tomato.harness import speed

    m = patch.timm(copy.deepcopy(model))
    m.sim = 1e-7
    photos = data.smoke_images(model)
    for b, point in ((1, points[0]), (2, points[2])):
        kept = []
        with torch.inference_mode():
            for x in speed.batches(photos, b):
                m(x)
                kept.append(patch.state(m).tokens.double())
        assert point.tokens_padded == pytest.approx(sum(float(k.max()) for k in kept) / len(kept))
        assert point.cut_pct == pytest.approx(float(100 * (196 - torch.cat(kept)).mean() / 196))
    assert len({float(k.max()) for k in kept}) > 1  # the batches differ, so rotating matters
    assert all(p.speedup_low <= p.speedup_high and p.oracle_low <= p.oracle_high for p in points)
    assert all(p.speedup > 0 and p.oracle_speedup > 0 for p in points)
    assert not hasattr(model, "_tomato")  # the caller's model is left unpatched
    out = payoff.record(points, tmp_path / "payoff_x.json", model="deit_tiny_patch16_224")
    assert records.read("payoff", out)["rows"][1]["tokens_padded"] == 1
    assert records.read("bench", out) is None


def test_payoff_refuses_an_out_file_of_another_kind(tmp_path, capsys):
    other = tmp_path / "bench_x.json"
    other.write_text(json.dumps({"rows": [{"name": "merge step: x"}], "provenance": {}}))
    assert cli.main(["bench", "--payoff", "--out", str(other), "--runs", "1", "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "is not a payoff record" in err[0]
    assert cli.main(["bench", "--payoff", "--sims", "-1", "--runs", "1", "--quiet"]) == 2
    assert "--sims -1.0" in capsys.readouterr().err


def test_the_bench_gives_every_forward_row_its_own_model(vit):
    """A model called several rows in a row keeps its weights in cache and times faster than
    one called once a round; so no two timed forwards share a model object."""
    import copy

    import torch

    from tomato.core import patch
    from tomato.harness import bench

    plain = vit()
    images = torch.randn(1, 3, 224, 224)
    forwards = bench._forwards(plain, patch.timm(copy.deepcopy(plain)), images, 138)
    models = [f.model for f in forwards.values()]
    assert all(m is not None for m in models) and len({id(m) for m in models}) == len(models)
