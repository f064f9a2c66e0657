"""The model page and the weights labels, for a model trained in more than one run."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tomato.book import tables, trained
from tomato.harness import models

TEMPLATE = models.WEIGHTS_DIR / "deit-tiny-imagenette" / "model_card.json"


def _first_run() -> dict:
    raw = json.loads(TEMPLATE.read_text())
    while raw.get("parent") is not None:  # the committed model's first run, whatever came after
        raw = raw["parent"]
    return raw


def _two_runs(tmp_path: Path) -> Path:
    """A card of a second run (recipe imagenette-cpu-more) holding the first run's card."""
    first = _first_run()
    second = copy.deepcopy(first)
    second["recipe"] = {**first["recipe"], "name": "imagenette-cpu-more", "continues": first["recipe"]["name"],
                        "phases": [{**p, "name": f"{p['name']}-2", "distill": False}
                                   for p in first["recipe"]["phases"] if p["role"] == "student"]}
    second["curve"] = [{**row, "phase": f"{row['phase']}-2"} for row in first["curve"][-3:]]
    second.update(parent=first, wall_s=600.0, precision="float32", weights_sha256="b" * 64,
                  val={**first["val"], "top1": 71.5})
    folder = tmp_path / "data" / "weights" / "deit-tiny-imagenette"
    folder.mkdir(parents=True)
    (folder / "model_card.json").write_text(json.dumps(second))
    return folder


@pytest.mark.skipif(not TEMPLATE.is_file(), reason="no committed model card")
def test_the_model_page_shows_every_run_of_a_model_trained_in_two(tmp_path):
    card = trained.card(str(_two_runs(tmp_path)))
    first = _first_run()
    assert [r["recipe"]["name"] for r in trained.lineage(card)] == [first["recipe"]["name"], "imagenette-cpu-more"]
    text = trained.summary(card)
    assert "in 2 runs" in text and "`imagenette-cpu-more`" in text and "top-1 71.50%" in text
    assert f"top-1 {first['val']['top1']:.2f}% after it" in text  # the first run's own result, named as such
    total = round((first["wall_s"] + 600) / 60)
    assert f"Altogether {total} min of training" in text
    curve = trained.curve(card)
    assert len(curve) == len(first["curve"]) + 3 and curve["step"].tolist() == list(range(1, len(curve) + 1))
    assert set(trained.recipe_table(card)["run"]) == {first["recipe"]["name"], "imagenette-cpu-more"}
    lines = trained.retrain_command(card).splitlines()
    assert len(lines) == 2 and "--init" not in lines[0]
    assert lines[1].endswith(f"--recipe imagenette-cpu-more --init runs/{first['recipe']['name']}/model.safetensors")
    fig = trained.plot_curve(card)
    assert any(t.get_text() == "run 2: imagenette-cpu-more" for t in fig.axes[0].texts)


@pytest.mark.skipif(not TEMPLATE.is_file(), reason="no committed model card")
def test_a_record_of_other_weights_is_named_so(tmp_path, monkeypatch):
    _two_runs(tmp_path)
    monkeypatch.setattr(tables, "WEIGHTS_DIR", tmp_path / "data" / "weights")
    first = _first_run()
    source = "checkpoint:/elsewhere/checkout/data/weights/deit-tiny-imagenette/model.safetensors"
    assert tables.stale(source, "b" * 64) == ""  # the committed weights themselves
    assert tables.stale(source, first["weights_sha256"]) == f"other weights, sha256 `{first['weights_sha256'][:12]}…`"
    assert tables.stale("random-init:seed=0", "c" * 64) == ""
    line = tables.recorded_weights({"model": "deit_tiny_distilled_patch16_224", "weights_source": source,
                                   "weights_sha256": first["weights_sha256"], "data": "/x/imagenette/val"})
    assert "; other weights, sha256" in line
    assert tables.source_label(source, "b" * 64) == "`data/weights/deit-tiny-imagenette` (trained here)"


@pytest.mark.skipif(not TEMPLATE.is_file(), reason="no committed model card")
def test_a_run_that_reused_a_teacher_is_retrained_with_the_run_that_trained_it(tmp_path):
    """The first run trains its teacher; the second reuses it (``train --teacher``): its
    command takes the teacher from the first run's folder, and the page says it was reused."""
    folder = _two_runs(tmp_path)
    raw = json.loads((folder / "model_card.json").read_text())
    first = _first_run()
    raw["recipe"]["phases"].insert(0, first["recipe"]["phases"][0])  # the recipe names its teacher phase
    raw["teacher"] = {"weights_sha256": "d" * 64, "file": "/elsewhere/teacher.safetensors"}
    (folder / "model_card.json").write_text(json.dumps(raw))
    name = first["recipe"]["name"]
    card = trained.card(str(folder))
    lines = trained.retrain_command(card).splitlines()
    assert "--teacher" not in lines[0]
    assert lines[1].endswith(f"--init runs/{name}/model.safetensors --teacher runs/{name}/teacher.safetensors")
    assert f"taught by the resnet18 run `{name}` trained (sha256 `dddddddddddd…`, reused)" in trained.summary(card)
    table = trained.recipe_table(card)
    assert table.loc[table["run"] == "imagenette-cpu-more", "epochs"].iloc[0] == "0 (reused)"
    # A first run that names another teacher than the one reused did not make it: the file stands.
    raw["parent"]["teacher_trained"] = {"weights_sha256": "e" * 64}
    (folder / "model_card.json").write_text(json.dumps(raw))
    assert trained.retrain_command(trained.card(str(folder))).splitlines()[1].endswith(
        "--teacher /elsewhere/teacher.safetensors")
