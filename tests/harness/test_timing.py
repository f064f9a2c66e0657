from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch

from tomato.harness import timing
from tomato.harness.machine import NOT_A_JETSON, jetson_info, machine_info
from tomato.harness.timing import (
    TimingStats,
    bootstrap_ratio,
    compare,
    device_sync,
    mean_difference,
    measure,
    paper_forwards,
    ratios,
)


def fake_clock(durations: Iterable[float], start: float = 100.0) -> Callable[[], float]:
    """A clock that, read twice per run, brackets each run with the given duration."""
    ticks: list[float] = []
    t = start
    for d in durations:
        ticks += [t, t + d]
        t += d + 1000.0  # big gaps between runs: only start/stop pairs may matter
    it = iter(ticks)
    return lambda: next(it)


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_stats_exact_values() -> None:
    s = TimingStats([4.0, 1.0, 3.0, 2.0, 10.0])
    assert s.n == 5
    assert s.median == 3.0
    assert s.mean == 4.0
    assert s.min == 1.0
    # numpy linear percentiles of [1,2,3,4,10]: q1 at position 1 -> 2, q3 at 3 -> 4
    assert s.q1 == 2.0
    assert s.q3 == 4.0
    assert s.iqr == 2.0
    d = s.to_dict()
    assert d["median"] == 3.0 and d["times"] == [4.0, 1.0, 3.0, 2.0, 10.0]
    json.dumps(d)


def test_stats_interpolated_quartiles() -> None:
    s = TimingStats([1.0, 2.0, 3.0, 4.0])
    assert s.median == 2.5
    assert s.q1 == pytest.approx(1.75)
    assert s.q3 == pytest.approx(3.25)
    assert s.iqr == pytest.approx(1.5)


def test_empty_stats_raise() -> None:
    with pytest.raises(ValueError):
        TimingStats([]).median


def test_measure_uses_clock_and_skips_warmup() -> None:
    fn = Counter()
    durations = [0.5, 0.1, 0.3, 0.2, 0.4]
    stats = measure(fn, runs=5, warmup=3, clock=fake_clock(durations))
    assert fn.calls == 8  # 3 warm-up + 5 timed
    assert stats.times == pytest.approx(durations)
    assert stats.median == pytest.approx(0.3)
    assert stats.mean == pytest.approx(0.3)
    assert stats.iqr == pytest.approx(0.4 - 0.2)


def test_measure_warmup_calls_are_not_timed() -> None:
    clock_reads = Counter()
    fn_calls: list[int] = []  # clock reads seen when fn runs

    def clock() -> float:
        clock_reads()
        return float(clock_reads.calls)

    def fn() -> None:
        fn_calls.append(clock_reads.calls)

    measure(fn, runs=2, warmup=4, clock=clock)
    # Warm-up calls happen before any clock read; each timed call after exactly one read.
    assert fn_calls == [0, 0, 0, 0, 1, 3]
    assert clock_reads.calls == 4


def test_measure_syncs_around_each_run() -> None:
    events: list[str] = []
    measure(
        lambda: events.append("fn"),
        runs=2,
        warmup=0,
        clock=lambda: events.append("clock") or 0.0,
        sync=lambda: events.append("sync"),
    )
    run = ["sync", "clock", "fn", "sync", "clock"]
    assert events[-10:] == run * 2


def test_measure_rejects_bad_args() -> None:
    with pytest.raises(ValueError):
        measure(lambda: None, runs=0)
    with pytest.raises(ValueError):
        measure(lambda: None, warmup=-1)


def test_paper_forwards_times_each_indexed_call_without_warmup() -> None:
    seen: list[int] = []
    durations = [float(i) for i in range(1, 12)]  # 1..11, mean 6
    stats = paper_forwards(seen.append, clock=fake_clock(durations))
    assert seen == list(range(11))  # the authors' 11 forwards, each told its index
    assert stats.times == durations and stats.mean == pytest.approx(6.0)
    assert paper_forwards(seen.append, n=3, clock=fake_clock([1.0, 2.0, 3.0])).n == 3
    with pytest.raises(ValueError, match="at least one forward"):
        paper_forwards(seen.append, n=0)


def test_compare_interleaves_round_robin_and_ratios() -> None:
    order: list[str] = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    # a: 2s, b: 1s, c: 4s on every run; each timed round starts one variant later
    # (a b c, b c a, c a b), so no variant always runs first after the bookkeeping.
    clock = fake_clock([2.0, 1.0, 4.0, 1.0, 4.0, 2.0, 4.0, 2.0, 1.0])
    stats = compare(fns, runs=3, warmup=2, clock=clock)
    assert order == ["a", "b", "c"] * 2 + ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert list(stats) == ["a", "b", "c"]
    assert stats["a"].times == [2.0] * 3 and stats["c"].median == 4.0
    r = ratios(stats, "a")
    assert r == {"a": 1.0, "b": 0.5, "c": 2.0}
    with pytest.raises(KeyError):
        ratios(stats, "missing")


def test_compare_runs_each_setup_untimed_before_its_call() -> None:
    order: list[str] = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    setups = {name: (lambda name=name: order.append(f"set {name}")) for name in ("a", "b")}
    stats = compare(fns, runs=2, warmup=1, clock=fake_clock([1.0, 3.0, 3.0, 1.0]), setup=setups)
    assert order == ["set a", "a", "set b", "b", "set a", "a", "set b", "b", "set b", "b", "set a", "a"]
    assert stats["a"].times == [1.0, 1.0] and stats["b"].times == [3.0, 3.0]


def test_compare_sequential_when_not_interleaved() -> None:
    order: list[str] = []
    fns = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    compare(fns, runs=2, warmup=1, clock=fake_clock([1.0] * 4), interleave=False)
    assert order == ["a"] * 3 + ["b"] * 3


def test_device_sync_cpu_is_noop() -> None:
    sync = device_sync("cpu")
    assert sync() is None
    assert device_sync(torch.device("cpu"))() is None
    assert device_sync(None)() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_sync_cuda() -> None:  # pragma: no cover - only with a GPU
    device_sync("cuda")()
    torch.ones(2, device="cuda").sum()


def test_compare_budget_adds_rounds_beyond_the_minimum() -> None:
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: (calls.append("b"), time.sleep(0.002))}
    stats = compare(fns, runs=2, warmup=0, budget_s=0.05)
    assert stats["a"].n == stats["b"].n > 2  # a budget only ever adds whole rounds
    assert calls[:4] == ["a", "b", "b", "a"]  # each round starts one variant later
    with pytest.raises(ValueError, match="budget_s"):
        compare(fns, runs=2, budget_s=0)


def test_bootstrap_ratio_pairs_interleaved_rounds() -> None:
    # Both variants share a strong drift; variant a is exactly half as slow in every round.
    base = [1.0, 3.0, 2.0, 8.0, 5.0, 4.0, 9.0, 7.0, 6.0, 10.0]
    half = [0.5 * t for t in base]
    lo, hi = bootstrap_ratio(half, base)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)  # drift cancels in pairs
    # Unpaired (unequal counts) the shared drift is noise: a wide interval around 0.5.
    lo_u, hi_u = bootstrap_ratio(half[:-1], base)
    assert lo_u < 0.4 and hi_u > 0.6
    assert bootstrap_ratio(half, base) == bootstrap_ratio(half, base)  # seeded
    with pytest.raises(ValueError):
        bootstrap_ratio([], base)


def test_mean_difference_welch_by_hand() -> None:
    a = [10.0, 11.0, 12.0]
    b = [8.0, 8.0, 9.0, 11.0]
    got = mean_difference(a, b)
    assert got["diff"] == pytest.approx(2.0)
    # Welch: se^2 = 1/3 + 2/4; t = 2 / sqrt(5/6); df = (5/6)^2 / ((1/3)^2/2 + (1/2)^2/3)
    assert got["t"] == pytest.approx(2.0 / np.sqrt(5 / 6))
    assert got["df"] == pytest.approx((5 / 6) ** 2 / ((1 / 3) ** 2 / 2 + 0.25 / 3))
    assert 0.0 < got["p"] < 1.0
    assert got["ci_low"] < got["diff"] < got["ci_high"]
    same = mean_difference(a, a)
    assert same["diff"] == 0.0 and same["p"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mean_difference([1.0], b)


def test_jetson_info_absent(tmp_path: Path) -> None:
    info = jetson_info(
        model_path=tmp_path / "model",
        release_path=tmp_path / "nv_tegra_release",
        nvpmodel=str(tmp_path / "no-such-nvpmodel"),
    )
    assert info["board_model"] == NOT_A_JETSON
    assert info["l4t_release"] == NOT_A_JETSON
    assert "absent" in info["power_mode"]


def test_jetson_info_present(tmp_path: Path) -> None:
    (tmp_path / "model").write_bytes(b"NVIDIA Jetson Nano Developer Kit\x00")
    (tmp_path / "rel").write_text(
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
        "DATE: Sat Feb 19 17:05:08 UTC 2022\n"
    )
    fake = tmp_path / "nvpmodel"
    fake.write_text("#!/bin/sh\necho 'NV Power Mode: MAXN'\necho 0\n")
    fake.chmod(0o755)
    info = jetson_info(model_path=tmp_path / "model", release_path=tmp_path / "rel", nvpmodel=str(fake))
    assert info["board_model"] == "NVIDIA Jetson Nano Developer Kit"
    assert info["l4t_release"] == "R32.7.1"
    assert info["power_mode"] == "NV Power Mode: MAXN | 0"


def test_machine_info_fields() -> None:
    info = machine_info()
    for key in ("python", "platform", "cpu_model", "cpu_count", "torch_threads", "torch", "timm", "nvtx_binding"):
        assert info[key] not in (None, "")
    for key in ("board_model", "l4t_release", "power_mode", "cuda_device"):
        assert key in info
    json.dumps(info)
    if not Path("/etc/nv_tegra_release").exists():
        assert info["l4t_release"] == NOT_A_JETSON
        assert info["board_model"] in (NOT_A_JETSON,) or "Jetson" not in info["board_model"]
        assert "absent" in info["power_mode"] or "unknown" in info["power_mode"]


def test_module_docstring_documents_nsys_on_cpu() -> None:
    doc = timing.__doc__ or ""
    assert "nsys profile -t nvtx" in doc and "--protocol paper" in doc
    assert np.isfinite(TimingStats([1.0]).iqr)


def test_at_batch_reads_a_row_without_a_batch_size_as_batch_1() -> None:
    from tomato.harness import speed

    rows = [{"variant": "deit"}, {"variant": "deit", "batch_size": 8}, {"variant": "tome:r=2", "batch_size": 1}]
    assert [r["variant"] for r in speed.at_batch(rows)] == ["deit", "tome:r=2"]
    assert speed.at_batch(rows, 8) == [rows[1]] and speed.at_batch(rows, 4) == []
