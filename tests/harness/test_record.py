"""python -m tomato record: one folder per model with its manifest, resumable after kill -9,
and the book's build refusing evidence of other weights."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tomato.harness import cli, manifest

ROOT = Path(__file__).resolve().parents[2]
WNIDS = ["n01440764", "n02102040"]  # two of the committed model's Imagenette classes


def _photos(root: Path, per_class: int = 6) -> Path:
    """``root/<wnid>/<i>.JPEG``: textured photos, so ToMato's groups differ from photo to photo."""
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(WNIDS):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ramp = np.linspace(0, 255, 64)[None, :, None] * rng.random()
            pixels = np.clip(ramp + rng.random((64, 64, 3)) * 60 + c * 80, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / wnid / f"{i:03d}.JPEG")
    return root


def _cmd(photos: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "tomato", "record", "--checkpoint", "deit-tiny-imagenette", "--data", str(photos),
            "--out", str(out), "--plan", "smoke", "--quiet", "--workers", "0"]


def _per_photo(out: Path) -> dict[str, bytes | list]:
    """Everything of a recording that is per photo (timings excepted)."""
    got: dict[str, bytes | list] = {}
    for pred in sorted(out.glob("*/*/predictions.csv")):
        got[str(pred.relative_to(out))] = pred.read_bytes()
    for name in ("fidelity", "agreement"):
        (path,) = out.glob(f"{name}_*.json")
        got[name] = json.loads(path.read_text())["rows"]
    return got


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_the_records_of_an_uninterrupted_run(tmp_path, killed_when):
    photos = _photos(tmp_path / "val")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    whole = tmp_path / "whole"
    subprocess.run(_cmd(photos, whole), check=True, env=env, cwd=ROOT, capture_output=True)

    broken = tmp_path / "broken"
    # Inside the fidelity study, one part written: its null baselines have drawn numbers.
    killed_when(_cmd(photos, broken), (broken / ".fidelity-parts" / "00000.json").exists, ROOT, env)
    assert not manifest.read(broken)["complete"]

    subprocess.run(_cmd(photos, broken), check=True, env=env, cwd=ROOT, capture_output=True)
    state = manifest.read(broken)
    assert state["complete"] and len(state["sessions"]) == 2
    assert _per_photo(broken) == _per_photo(whole)
    # One manifest lists every record, each of the committed weights, with wall and floor seconds.
    assert [r["path"] for r in state["records"]] == [r["path"] for r in manifest.read(whole)["records"]]
    assert {r["weights_sha256"] for r in state["records"]} == {state["weights_sha256"]}
    assert state["wall_s"] > 0 and state["floor_s"] > 0
    assert not (broken / ".fidelity-parts").exists()
    # Every weights-dependent kind the book reads, in the one folder.
    assert {r["kind"] for r in state["records"]} == {"sweep", "fidelity", "agreement", "timing", "static",
                                                      "bench", "payoff"}
    # One batch-1 timing per variant: a variant of both sweeps has one speed-up.
    table1, beyond = (pd.read_csv(whole / name / "sweep.csv").set_index("variant") for name in ("table1", "beyond"))
    both = table1.index.intersection(beyond.index)
    assert len(both) >= 2
    assert table1.loc[both, "speedup"].tolist() == beyond.loc[both, "speedup"].tolist()


def test_record_refuses_random_weights_and_a_foreign_folder(tmp_path, capsys):
    photos = _photos(tmp_path / "val", per_class=1)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert cli.main(["record", "--checkpoint", "deit-tiny-imagenette", "--data", str(photos),
                     "--out", str(foreign), "--quiet"]) == 2
    assert (foreign / "notes.txt").read_text() == "mine"
    assert cli.main(["record", "--random-weights", "--model", "deit_tiny_patch16_224", "--data", str(photos),
                     "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert cli.main(["record", "--random-weights", "--data", str(photos), "--quiet"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert "not a recording of ours" in errors[0] and "random-init" in errors[1] and "--out" in errors[2]


def test_record_refuses_to_resume_a_folder_made_under_other_plan_settings(tmp_path, capsys):
    """Newer code that changed the plan (its variants, rounds, passes) must not add its
    records to a folder half made by the old one: two protocols in one recording."""
    from tomato.harness import models

    photos = _photos(tmp_path / "val", per_class=1)
    card = json.loads((models.WEIGHTS_DIR / "deit-tiny-imagenette" / "model_card.json").read_text())
    out = tmp_path / "rec"
    out.mkdir()
    old = {"weights_sha256": card["weights_sha256"], "data": str(photos.resolve()), "plan": "smoke",
           "plan_settings": {"runs_b1": 1}, "records": [], "complete": False}
    manifest.write(out, old)
    assert cli.main(["record", "--checkpoint", "deit-tiny-imagenette", "--data", str(photos), "--out", str(out),
                     "--plan", "smoke", "--quiet", "--workers", "0"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "plan's settings changed" in errors[0]
    assert manifest.read(out) == old and sorted(p.name for p in out.iterdir() if p.name != ".lock") == [
        manifest.MANIFEST]


# ------------------------------------------------------------------ stale evidence

def _mini_repo(root: Path, committed: str = "a" * 64) -> Path:
    """A repository with one trained model and its complete recording."""
    shutil.copytree(ROOT / "scripts", root / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    card = root / "data" / "weights" / "m" / "model_card.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"weights_sha256": committed}))
    folder = root / "data" / "results" / "m"
    (folder / "table1" / "deit").mkdir(parents=True)
    (folder / "table1" / "deit" / "config.json").write_text(json.dumps(
        {"weights_sha256": committed, "weights_source": "checkpoint:/x/data/weights/m/model.safetensors"}))
    manifest.write(folder, {"weights_sha256": committed, "complete": True,
                            "records": [{"path": "table1", "weights_sha256": committed}]})
    # A random-init record names no trained model: allowed.
    (root / "data" / "results" / "bench_cpu_deit-base_random-init.json").write_text(json.dumps(
        {"rows": [], "provenance": {"weights": "random-init:seed=0", "weights_sha256": "f" * 64}}))
    return root


def _build(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(root / "scripts" / "build_book.py"), "--skip-execute",
                           "--skip-build"], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_build_refuses_a_record_of_other_weights(tmp_path):
    root = _mini_repo(tmp_path)
    assert _build(root).returncode == 0

    # A record of an earlier run of the model, at the top of data/results.
    (root / "data" / "results" / "robust-b8_cpu_m.json").write_text(json.dumps(
        {"config": {"protocol": "robust", "weights_sha256": "b" * 64,
                    "weights_source": "checkpoint:/x/data/weights/m/model.safetensors"},
         "rows": [], "provenance": {}}))
    done = _build(root)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert "robust-b8_cpu_m.json" in errors[0] and "bbbbbbbb" in errors[0] and "aaaaaaaa" in errors[0]


def test_a_record_the_manifest_does_not_list_or_of_other_weights_is_stale(tmp_path):
    root = _mini_repo(tmp_path)
    results, weights = root / "data" / "results", root / "data" / "weights"
    assert manifest.stale(results, weights) == []
    folder = results / "m"
    (folder / "fidelity_x.json").write_text(json.dumps({"baseline": {"n": 1}, "provenance": {}}))
    (problem,) = manifest.stale(results, weights)
    assert "m/fidelity_x.json" in problem and "not listed" in problem
    (folder / "fidelity_x.json").unlink()
    (folder / "table1" / "deit" / "config.json").write_text(json.dumps({"weights_sha256": "c" * 64}))
    (problem,) = manifest.stale(results, weights)
    assert "table1/deit/config.json" in problem and "cccccccc" in problem
    # An unfinished recording is not evidence yet.
    (folder / "table1" / "deit" / "config.json").write_text(json.dumps({"weights_sha256": "a" * 64}))
    manifest.write(folder, {**manifest.read(folder), "complete": False})
    (problem,) = manifest.stale(results, weights)
    assert "has not finished" in problem
