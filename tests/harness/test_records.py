"""The JSON records under data/results: one schema per kind, written and read only through
tomato.harness.records (the book through tomato.book.runs)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tomato.harness import records

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "data" / "results"


def test_every_committed_record_is_of_exactly_one_kind():
    files = sorted(RESULTS.glob("*.json")) + sorted(RESULTS.glob("*/timing.json"))
    kinds = {f.relative_to(RESULTS).as_posix(): [k for k in records.KINDS if records.read(k, f)] for f in files}
    # The one old exactness table predates the kinds; it is read by nothing.
    unread = {name for name, ks in kinds.items() if not ks}
    assert unread == {"bench_exactness_imagenet-sample_deit-base_random-init.json"}
    assert all(len(ks) == 1 for name, ks in kinds.items() if name not in unread), kinds
    for name, ks in kinds.items():
        if ks and "/" not in name:  # a top-level record's name says its kind
            assert Path(name).match(records.KINDS[ks[0]].pattern)


def test_write_refuses_a_record_not_of_its_kind_and_writes_nothing(tmp_path: Path):
    path = tmp_path / "robust_x.json"
    with pytest.raises(ValueError, match="a timing record needs config, rows, provenance"):
        records.write("timing", path, {"rows": [], "provenance": {}})
    with pytest.raises(ValueError, match="an agreement record needs rows, provenance"):
        records.write("agreement", path, {"provenance": {}})
    with pytest.raises(ValueError, match="no record kind 'timings'"):
        records.write("timings", path, {"rows": []})
    assert not path.exists()
    records.write("timing", path, {"config": {"protocol": "robust"}, "rows": [{"x": float("nan")}],
                                   "provenance": {"when": Path("/tmp")}})
    assert records.find("timing", tmp_path) == [(path, records.read("timing", path))]
    assert records.read("timing", path)["rows"] == [{"x": "nan"}]  # made JSON-safe on the way
    assert records.find("bench", tmp_path) == [] and records.read("fidelity", path) is None
    path.write_text("{torn")
    assert records.read("timing", path) is None


def test_one_writer_and_one_reader_per_record_kind():
    """JSON is parsed in one module per kind of record: the JSON records (records.py), the
    evaluation run folder (results.py), the training run (training.py) and its model card
    (modelcard.py), a recording's manifest and scratch parts (manifest.py); the book reads
    them all in runs.py. No notebook opens a result file."""
    package = ROOT / "tomato"
    parsing = {py.relative_to(package).as_posix() for py in package.rglob("*.py")
               if re.search(r"json\.loads?\(", py.read_text())}
    assert parsing == {"harness/records.py", "harness/results.py", "harness/training.py",
                       "harness/modelcard.py", "harness/manifest.py", "book/runs.py",
                       "book/parameters.py"}  # the notebooks' own JSON, not a record
    writing = {py.relative_to(package).as_posix() for py in package.rglob("*.py")
               if "atomic_write_text(" in py.read_text()}
    assert writing <= {"harness/records.py", "harness/results.py", "harness/training.py",
                       "harness/modelcard.py", "harness/manifest.py", "harness/sweep.py"}  # sweep.py: its sweep.csv
    importing = {py.relative_to(package).as_posix() for py in (package / "book").rglob("*.py")
                 if re.search(r"harness import .*records|harness\.records", py.read_text())}
    assert importing == {"book/runs.py"}, importing
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert not re.search(r"json\.loads?\(|read_text\(|read_csv\(", code), nb.name


def test_a_record_reads_back_equal_with_one_compact_row_a_line(tmp_path: Path):
    rows = [{"setting": "sim=1e-07", "variant": "tomato", "kl": 1e-4 * i, "agree": i % 2 == 0, "index": i}
            for i in range(50)]
    record = {"rows": rows, "summary": [{"setting": "sim=1e-07", "n": 50}], "baseline": {"n": 50, "classes": [1, 2]},
              "provenance": {"git": {"commit": "abc"}, "sims": [1e-7]}}
    path = records.write("fidelity", tmp_path / "f.json", record)
    text = path.read_text()
    assert json.loads(text) == record
    lines = text.splitlines()
    assert '  {"setting":"sim=1e-07","variant":"tomato","kl":0.0,"agree":true,"index":0},' in lines
    assert len(lines) < 50 + 25  # one line a row, the rest indented
    assert json.loads(records.dumps({})) == {}
