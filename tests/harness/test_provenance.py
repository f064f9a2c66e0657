from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tomato.harness.provenance import collect, git_commit, jsonable


def test_collect_has_required_fields_and_is_json() -> None:
    rec = collect(
        model="deit_tiny_patch16_224",
        weights_sha256="abc123",
        data=Path("/data/imagenet-mini/val"),
        n_images=3923,
        variant={"name": "tomato", "sim": 1e-7},
    )
    for key in ("model", "weights_sha256", "data", "n_images", "variant",
                "python", "torch", "timm", "gpu_name", "cpu_model", "machine",
                "git", "date_utc", "hostname"):
        assert key in rec, key
    assert rec["data"] == "/data/imagenet-mini/val"
    assert rec["torch"] == torch.__version__
    assert set(rec["git"]) >= {"commit", "dirty"}
    assert "board_model" in rec["machine"]
    when = dt.datetime.fromisoformat(rec["date_utc"])
    assert when.utcoffset() == dt.timedelta(0)
    assert json.loads(json.dumps(rec)) == rec


def test_collect_does_not_let_callers_override_environment() -> None:
    rec = collect(torch="0.0-fake")
    assert rec["torch"] == torch.__version__


def test_git_commit_outside_repo_is_unknown(tmp_path: Path) -> None:
    info = git_commit(tmp_path)
    assert info["commit"] == "unknown"
    assert info["dirty"] == "unknown"


def test_git_commit_in_repo(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not usable here")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    info = git_commit(tmp_path)
    assert len(info["commit"]) == 40 and info["dirty"] is False and info["untracked"] == 0
    (tmp_path / "a.txt").write_text("2")
    (tmp_path / "new.txt").write_text("x")
    info = git_commit(tmp_path)
    assert info["dirty"] is True and info["untracked"] == 1


def test_jsonable_converts_common_types() -> None:
    out = jsonable({
        "p": Path("x/y"), "t": (1, 2), "np": np.float32(0.5), "ti": torch.tensor(3),
        "dev": torch.device("cpu"), "nan": float("nan"), "s": {2, 1},
    })
    assert out == {"p": "x/y", "t": [1, 2], "np": 0.5, "ti": 3, "dev": "cpu", "nan": "nan", "s": [1, 2]}
    json.dumps(out)


def test_collect_records_the_code_as_the_run_started(monkeypatch) -> None:
    # A commit made while a long run computes must not be credited with its result.
    from tomato.harness import provenance

    states = iter([{"commit": "a" * 40, "dirty": False, "untracked": 0},
                   {"commit": "b" * 40, "dirty": True, "untracked": 0}])
    monkeypatch.setattr(provenance, "git_commit", lambda repo=None: next(states))
    started = provenance.start()
    info = collect(started, model="m")  # "later": git now says b, dirty
    assert info["git"] == {"commit": "a" * 40, "dirty": False, "untracked": 0}
    assert info["started_utc"] <= info["date_utc"] and info["model"] == "m"
    # Without a snapshot, collect takes the state now.
    assert collect()["git"]["commit"] == "b" * 40


def test_fidelity_record_snapshots_git_before_computing(monkeypatch) -> None:
    from tomato.harness import fidelity, provenance

    calls = []
    monkeypatch.setattr(provenance, "git_commit",
                        lambda repo=None: calls.append("git") or {"commit": "c", "dirty": False, "untracked": 0})
    monkeypatch.setattr(fidelity, "run", lambda *a, **k: calls.append("run") or {"rows": []})
    rec = fidelity.record("m", None, "random-init", "0", [], "smoke")
    assert calls == ["git", "run"] and rec["provenance"]["git"]["commit"] == "c"
