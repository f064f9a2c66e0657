from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tomato.harness import results
from tomato.harness.results import RunStore, atomic_write_text

CONFIG = {
    "model": "deit_base_patch16_224",
    "weights_sha256": "deadbeef",
    "variant": "tomato:sim=1e-7",
    "data": "/data/imagenet-mini/val",
    "n_images": 10,
    "batch_size": 4,
}


def make_rows(n: int = 10) -> list[dict]:
    rows = []
    for i in range(n):
        label = i % 3
        top5 = [label if i % 4 else 7, 7, 8, 9, label if i % 5 else 6]
        rows.append({
            "index": i,
            "path": f"val/n0{i:04d}/img, {i}.JPEG",  # comma: CSV quoting must survive
            "label": label,
            "top5": top5,
            "correct1": top5[0] == label,
            "correct5": label in top5,
            "tokens": 150 + i,
            "latency_ms": 1.5 * i,
        })
    return rows


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_atomic_write_crash_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.csv"
    atomic_write_text(target, "original")

    def crash(*_: object) -> None:
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_text(target, "new content")
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["f.csv"]


def test_open_append_reopen_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    store = RunStore.open(out, CONFIG, provenance={"host": "a"})
    rows = make_rows()
    store.append(rows[:4], bad=[{"index": 4, "path": "broken.JPEG", "error": "OSError: truncated"}])
    assert store.done == {0, 1, 2, 3, 4}
    first = store.rows
    for name in ("config.json", "provenance.json", "predictions.csv", "bad_images.csv"):
        assert (out / name).exists()
    store.close()

    again = RunStore.open(out, dict(CONFIG), provenance={"host": "b"})
    assert again.rows == first
    assert again.bad == [{"index": 4, "path": "broken.JPEG", "kind": "corrupt", "error": "OSError: truncated"}]
    assert again.done == {0, 1, 2, 3, 4}
    # Rows read back have the normalised types.
    r = again.rows[1]
    assert r["top5"] == [1, 7, 8, 9, 1] and r["correct1"] == 1 and r["tokens"] == 151
    assert r["latency_ms"] == 1.5 and r["path"] == "val/n00001/img, 1.JPEG"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["host"] == "a" and prov["resumed"] == [{"host": "b"}]


def test_append_rejects_duplicates_and_missing_columns(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path, CONFIG)
    rows = make_rows(3)
    store.append(rows[:2])
    with pytest.raises(ValueError, match="already recorded"):
        store.append([rows[1]])
    with pytest.raises(ValueError, match="already recorded"):
        store.append([], bad=[{"index": 0, "path": "x", "error": "e"}])
    with pytest.raises(ValueError, match="missing"):
        store.append([{"index": 5, "path": "p"}])
    assert store.done == {0, 1}


def test_different_config_is_refused_naming_keys(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, CONFIG) as store:
        store.append(make_rows(2))
    other = {**CONFIG, "variant": "tome:r=2", "extra_key": 1}
    with pytest.raises(ValueError) as exc:
        RunStore.open(tmp_path, other)
    msg = str(exc.value)
    assert "variant" in msg and "extra_key" in msg and "--out" in msg and "delete" in msg
    assert "model" not in msg.split("differing keys")[1].split(";")[0]
    # Nothing was touched by the refused open.
    assert json.loads((tmp_path / "config.json").read_text()) == CONFIG


def test_config_normalised_like_json(tmp_path: Path) -> None:
    cfg = {**CONFIG, "data": Path("/data/imagenet-mini/val"), "sizes": (1, 2)}
    RunStore.open(tmp_path, cfg).close()
    RunStore.open(tmp_path, {**CONFIG, "sizes": [1, 2]}).close()  # same identity once serialised


def test_results_without_config_are_refused(tmp_path: Path) -> None:
    (tmp_path / "predictions.csv").write_text("index\n0\n")
    with pytest.raises(ValueError, match="config.json"):
        RunStore.open(tmp_path, CONFIG)


def test_summary_numbers(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path, CONFIG)
    store.append(
        [
            {"index": 0, "path": "a", "label": 1, "top5": [1, 2, 3, 4, 5], "correct1": 1, "correct5": 1, "tokens": 100},
            {"index": 1, "path": "b", "label": 2, "top5": [1, 2, 3, 4, 5], "correct1": 0, "correct5": 1, "tokens": 150},
            {"index": 2, "path": "c", "label": 9, "top5": [1, 2, 3, 4, 5], "correct1": 0, "correct5": 0, "tokens": 197},
            {"index": 3, "path": "d", "label": 3, "top5": "3 1 2 4 5", "correct1": True, "correct5": True, "tokens": 153},
        ],
        bad=[{"index": 4, "path": "e", "error": "decode"}],
    )
    s = store.summary(extra={"latency_s": 0.25})
    assert s["n_images"] == 4 and s["n_bad"] == 1
    assert s["top1"] == pytest.approx(50.0)
    assert s["top5"] == pytest.approx(75.0)
    assert s["tokens_mean"] == pytest.approx(150.0)
    assert s["tokens_min"] == 100 and s["tokens_max"] == 197
    assert s["latency_s"] == 0.25
    assert json.loads((tmp_path / "summary.json").read_text()) == s


def test_summary_empty_run(tmp_path: Path) -> None:
    s = RunStore.open(tmp_path, CONFIG).summary()
    assert s["n_images"] == 0 and s["top1"] is None and s["tokens_mean"] is None


def test_kill_midway_then_resume_equals_one_shot(tmp_path: Path) -> None:
    rows = make_rows(10)
    bad = [{"index": 10, "path": "x.JPEG", "error": "boom"}]

    one = RunStore.open(tmp_path / "one", CONFIG)
    one.append(rows, bad)
    expected = one.summary()

    first = RunStore.open(tmp_path / "two", CONFIG)
    first.append(rows[:3])
    first.append(rows[3:5])
    first.close()  # the run stops: only the files survive (tests/harness/test_faults.py kills a real process)
    resumed = RunStore.open(tmp_path / "two", CONFIG)
    todo = [r for r in rows if r["index"] not in resumed.done]
    assert [r["index"] for r in todo] == [5, 6, 7, 8, 9]
    resumed.append(todo, bad)
    assert resumed.summary() == expected
    assert resumed.rows == one.rows
    for name in ("predictions.csv", "bad_images.csv", "summary.json", "config.json"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    leftovers = [p.name for p in (tmp_path / "two").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_crash_during_append_keeps_previous_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(6)
    store = RunStore.open(tmp_path, CONFIG)
    store.append(rows[:3])

    def crash(*_: object) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C at the worst moment

    monkeypatch.setattr(results.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(rows[3:])
    monkeypatch.undo()
    store.close()
    again = RunStore.open(tmp_path, CONFIG)
    assert again.done == {0, 1, 2}


# ---------------------------------------------------------------- one owner per folder


def test_a_second_open_is_refused_while_the_first_holds_the_folder(tmp_path: Path) -> None:
    first = RunStore.open(tmp_path / "run", CONFIG)
    first.append(make_rows(2))
    with pytest.raises(results.RunFolderBusy, match="in use by another run"):
        RunStore.open(tmp_path / "run", CONFIG)
    first.close()
    with RunStore.open(tmp_path / "run", CONFIG) as again:  # released: resumable again
        assert again.done == {0, 1}


def test_the_lock_is_taken_before_config_is_checked(tmp_path: Path) -> None:
    # A run with ANOTHER config must be refused as busy, not checked against a config.json
    # the owner may not have written yet: that gap let two runs mix (issue 11, item 1).
    out = tmp_path / "run"
    with RunStore.open(out, CONFIG):
        (out / "config.json").unlink()
        with pytest.raises(results.RunFolderBusy):
            RunStore.open(out, {**CONFIG, "variant": "tome:r=2"})
        assert not (out / "config.json").exists()


def test_a_refused_open_leaves_no_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    lock = RunStore.lock(tmp_path / "taken")
    with pytest.raises(results.RunFolderBusy):
        RunStore.open(tmp_path / "taken", CONFIG)
    lock.release()
    with pytest.raises(ValueError, match="existing file"):
        (tmp_path / "file").write_text("x")
        RunStore.open(tmp_path / "file", CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]


# ---------------------------------------------------------------- bad images with a reason


def test_transient_failures_are_retried_and_keep_the_run_incomplete(tmp_path: Path) -> None:
    rows = make_rows(4)
    with RunStore.open(tmp_path, CONFIG) as store:
        store.append(rows[:2], bad=[
            {"index": 2, "path": "locked.JPEG", "kind": "transient", "error": "PermissionError: [Errno 13] denied"},
            {"index": 3, "path": "broken.JPEG", "kind": "corrupt", "error": "UnidentifiedImageError: x"},
        ])
        assert store.done == {0, 1, 3} and store.retry == {2} and not store.complete(4)
        s = store.summary()
        assert s["n_bad"] == 1 and s["n_retry"] == 1
    text = (tmp_path / "bad_images.csv").read_text()
    assert "transient,PermissionError: [Errno 13] denied" in text and "corrupt,UnidentifiedImageError" in text
    with RunStore.open(tmp_path, CONFIG) as again:  # resume: index 2 is still to do
        assert again.retry == {2} and 2 not in again.done
        again.append([rows[2]])  # the retry succeeded: the failure record goes away
        assert again.complete(4) and again.retry == set()
        assert again.summary()["n_retry"] == 0
        with pytest.raises(ValueError, match="already recorded"):
            again.append([], bad=[{"index": 3, "path": "broken.JPEG", "error": "again"}])
    assert "locked.JPEG" not in (tmp_path / "bad_images.csv").read_text()


def test_bad_rows_without_kind_are_corrupt_and_old_files_read(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, CONFIG) as store:
        store.append([], bad=[{"index": 0, "path": "a", "error": "e"}])
        assert store.bad[0]["kind"] == "corrupt" and store.done == {0}
        with pytest.raises(ValueError, match="kind"):
            store.append([], bad=[{"index": 1, "path": "b", "kind": "maybe", "error": "e"}])
    # A bad_images.csv from before kinds existed: (index, path, error) only.
    (tmp_path / "bad_images.csv").write_text("index,path,error\n0,a,unreadable image\n")
    with RunStore.open(tmp_path, CONFIG) as store:
        assert store.done == {0} and store.retry == set()


def test_remove_if_created_keeps_folders_with_results(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / results.LOCK_FILE).write_text("")
    results.remove_if_created(tmp_path / "empty", created=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "sweep.csv").write_text("x")
    results.remove_if_created(tmp_path / "full", created=True)
    (tmp_path / "old").mkdir()
    results.remove_if_created(tmp_path / "old", created=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "old"]
